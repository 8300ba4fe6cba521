import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { tinyConfig, newRun, quiet, tempDir, TINY_MODEL } from './kit/helpers.ts';
import { trainRun } from '../ml/loop/run.ts';
import { checkpointsDir, listCheckpointDirs, loadCheckpoint } from '../ml/checkpoint/checkpoint.ts';
import { decodeSafetensors, encodeSafetensors } from '../ml/checkpoint/safetensors.ts';
import { paramLayout } from '../ml/model/spec.ts';
import { decodeCompressed, encodeCompressed, globalMagnitudeMask } from '../compression/index.ts';
import { classLabels, NUM_CLASSES } from '../ml/data/classification.ts';
import { huggingFaceConfig } from '../ml/export/huggingface.ts';
import { TOKENIZER_FILES } from '../ml/export/hf-tokenizer.ts';
import { datasetFor } from '../ml/train/data.ts';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

const run = promisify(execFile);

const HF_LAYER = ['attention.self.query', 'attention.self.key', 'attention.self.value', 'attention.output.dense', 'intermediate.dense', 'output.dense'];

/** A tiny model trained for `steps` steps: its run, config, latest checkpoint, MLM layout and weights. */
async function trainedTiny(steps: number) {
  const config = tinyConfig({ budget: { kind: 'steps', steps } });
  const r = newRun(config);
  await trainRun(config, r, quiet);
  const ckptDir = listCheckpointDirs(checkpointsDir(r.dir)).at(-1)!;
  const layout = paramLayout(TINY_MODEL);
  return { r, config, ckptDir, layout, weights: loadCheckpoint(ckptDir, layout).weights };
}

/** The tokenizer files an export wrote (tests/tokenizer-export.test.ts checks their ids in depth). */
function exportedTokenizer(dir: string): { json: string; hf: HfTokenizer; config: Record<string, unknown> } {
  const read = (name: string) => fs.readFileSync(path.join(dir, name), 'utf8');
  const config = JSON.parse(read('tokenizer_config.json'));
  return { json: read('tokenizer.json'), hf: new HfTokenizer(JSON.parse(read('tokenizer.json')), config), config };
}

test.serial('ttc export writes a Hugging Face BertForMaskedLM safetensors + config.json and the run\'s tokenizer, also from a compressed file', async (t) => {
  const { r, config, ckptDir, layout, weights } = await trainedTiny(2);
  const out = tempDir('export');
  await run(process.execPath, ['bin/ttc.mjs', 'export', '--run', r.dir, '--out', out]);
  // the tokenizer next to config.json: the run's, giving its ids
  const { tokenizer: tok, cacheKey } = await datasetFor(config, () => {});
  const exported = exportedTokenizer(out);
  const sentence = 'The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced "no evidence".';
  t.deepEqual(exported.hf.encode(sentence).ids, [2, ...tok.encode(sentence), 3]);
  t.like(exported.config, { tokenizer_class: 'PreTrainedTokenizerFast', model_max_length: TINY_MODEL.seqLen });
  t.true(fs.existsSync(path.join(out, 'special_tokens_map.json')));
  const hf = decodeSafetensors(fs.readFileSync(path.join(out, 'model.safetensors')));
  const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  t.deepEqual(cfg.architectures, ['BertForMaskedLM']);
  t.is(cfg.hidden_size, TINY_MODEL.hidden);
  t.is(cfg.num_hidden_layers, TINY_MODEL.layers);
  t.is(cfg.intermediate_size, TINY_MODEL.ffn);
  t.is(cfg.max_position_embeddings, TINY_MODEL.seqLen);
  const expected = [
    'bert.embeddings.word_embeddings.weight', 'bert.embeddings.position_embeddings.weight', 'bert.embeddings.token_type_embeddings.weight',
    'bert.embeddings.LayerNorm.weight', 'bert.embeddings.LayerNorm.bias',
    ...HF_LAYER.flatMap((m) => [`bert.encoder.layer.0.${m}.weight`, `bert.encoder.layer.0.${m}.bias`]),
    'bert.encoder.layer.0.attention.output.LayerNorm.weight', 'bert.encoder.layer.0.attention.output.LayerNorm.bias',
    'bert.encoder.layer.0.output.LayerNorm.weight', 'bert.encoder.layer.0.output.LayerNorm.bias',
    'cls.predictions.transform.dense.weight', 'cls.predictions.transform.dense.bias',
    'cls.predictions.transform.LayerNorm.weight', 'cls.predictions.transform.LayerNorm.bias',
    'cls.predictions.bias', 'cls.predictions.decoder.weight', 'cls.predictions.decoder.bias',
  ];
  t.deepEqual(Object.keys(hf.tensors).sort(), expected.sort());
  // Dense weights are [out, in] (PyTorch Linear): element (o, i) of HF = element (i, o) of ours.
  const ffn = layout.byName.get('encoder.layer.0.intermediate.dense.weight')!;
  const hfFfn = hf.tensors['bert.encoder.layer.0.intermediate.dense.weight'];
  t.deepEqual(hfFfn.shape, [TINY_MODEL.ffn, TINY_MODEL.hidden]);
  for (const [i, o] of [[0, 0], [3, 17], [TINY_MODEL.hidden - 1, TINY_MODEL.ffn - 1]]) {
    t.is(hfFfn.data[o * TINY_MODEL.hidden + i], weights[ffn.offset + i * TINY_MODEL.ffn + o]);
  }
  t.deepEqual(Array.from(hf.tensors['cls.predictions.decoder.weight'].data), Array.from(hf.tensors['bert.embeddings.word_embeddings.weight'].data));

  // A compressed file exports its dequantized weights.
  const comp = path.join(out, 'q4.ttcz');
  fs.writeFileSync(comp, encodeCompressed(weights, layout, { quant: { bits: 4, granularity: 'channel', embeddings: true } }));
  const out2 = tempDir('export-q');
  await run(process.execPath, ['bin/ttc.mjs', 'export', '--checkpoint', ckptDir, '--compressed', comp, '--out', out2]);
  const deq = decodeCompressed(fs.readFileSync(comp), layout);
  const hf2 = decodeSafetensors(fs.readFileSync(path.join(out2, 'model.safetensors')));
  const emb = layout.byName.get('embeddings.word_embeddings.weight')!;
  t.deepEqual(Array.from(hf2.tensors['bert.embeddings.word_embeddings.weight'].data), Array.from(deq.subarray(emb.offset, emb.offset + emb.size)));
  t.true(new Set(hf2.tensors['bert.embeddings.word_embeddings.weight'].data.slice(0, TINY_MODEL.hidden)).size <= 15, '4-bit: at most 15 levels per row');
  t.is(exportedTokenizer(out2).json, exported.json, 'a checkpoint in a run directory: the run\'s tokenizer');

  // a checkpoint outside any run directory: the model alone, and a warning; --tokenizer names the dataset cache's file
  const lone = path.join(tempDir('export-lone'), 'step');
  fs.cpSync(ckptDir, lone, { recursive: true });
  const out3 = tempDir('export-lone-out');
  const warned = await run(process.execPath, ['bin/ttc.mjs', 'export', '--checkpoint', lone, '--out', out3]);
  t.regex(warned.stderr, /ttc export: no tokenizer exported: .* is not in a run directory: pass --run, or --tokenizer/);
  t.true(fs.existsSync(path.join(out3, 'model.safetensors')));
  t.false(fs.existsSync(path.join(out3, 'tokenizer.json')));
  const cached = path.join(config.cacheDir, cacheKey, 'tokenizer.json');
  await run(process.execPath, ['bin/ttc.mjs', 'export', '--checkpoint', lone, '--tokenizer', cached, '--out', out3]);
  t.is(exportedTokenizer(out3).json, exported.json);
  const bad = await run(process.execPath, ['bin/ttc.mjs', 'export', '--checkpoint', lone, '--tokenizer', path.join(out3, 'config.json'), '--out', out3]).then(() => undefined, (e: { code: number; stderr: string }) => e);
  t.is(bad?.code, 1);
  t.regex(bad!.stderr.trim(), /^ttc export: --tokenizer .*config\.json: not a ttc tokenizer file \(a dataset cache's tokenizer\.json\): unsupported format$/);
});

test.serial('a classifier export names its classes: num_labels, id2label and label2id match the head, so from_pretrained builds the right head', async (t) => {
  // a fine-tuned classifier as the sweep compresses it: pretrained body + a 10-class head
  const layout = paramLayout(TINY_MODEL, { kind: 'classifier', numClasses: NUM_CLASSES });
  const weights = Float32Array.from({ length: layout.total }, (_, i) => Math.sin(i) * 0.05);
  const config = tinyConfig({ budget: { kind: 'steps', steps: 1 } });
  const r = newRun(config);
  await trainRun(config, r, quiet);
  const ckptDir = listCheckpointDirs(checkpointsDir(r.dir)).at(-1)!;
  const out = tempDir('export-cls');
  const comp = path.join(out, 'cls-q8.ttcz');
  fs.writeFileSync(comp, encodeCompressed(weights, layout, { quant: { bits: 8, granularity: 'channel', embeddings: true } }));
  await run(process.execPath, ['bin/ttc.mjs', 'export', '--checkpoint', ckptDir, '--compressed', comp, '--out', path.join(out, 'hf')]);
  const cfg = JSON.parse(fs.readFileSync(path.join(out, 'hf', 'config.json'), 'utf8'));
  const hf = decodeSafetensors(fs.readFileSync(path.join(out, 'hf', 'model.safetensors')));
  t.deepEqual(cfg.architectures, ['BertForSequenceClassification']);
  t.deepEqual(hf.tensors['classifier.weight'].shape, [NUM_CLASSES, TINY_MODEL.hidden]);
  t.is(cfg.num_labels, NUM_CLASSES);
  const names = classLabels();
  t.deepEqual(cfg.id2label, Object.fromEntries(names.map((l, i) => [String(i), l])));
  t.deepEqual(cfg.label2id, Object.fromEntries(names.map((l, i) => [l, i])));
  t.true(names.every((l) => l.startsWith('noun.')), names.join(', '));
  for (const f of TOKENIZER_FILES) t.true(fs.existsSync(path.join(out, 'hf', f)), f);
});

test('a classifier head of another size gets Hugging Face\'s default names; label names of the wrong count are refused', (t) => {
  const layout = paramLayout(TINY_MODEL, { kind: 'classifier', numClasses: 3 });
  const weights = new Float32Array(layout.total);
  const cfg = huggingFaceConfig({ dims: TINY_MODEL, layout, weights });
  t.is(cfg.num_labels, 3);
  t.deepEqual(cfg.id2label, { 0: 'LABEL_0', 1: 'LABEL_1', 2: 'LABEL_2' });
  t.deepEqual(cfg.label2id, { LABEL_0: 0, LABEL_1: 1, LABEL_2: 2 });
  t.throws(() => huggingFaceConfig({ dims: TINY_MODEL, layout, weights, labels: ['a', 'b'] }), { message: /2 label names for a 3-class head/ });
  t.is(huggingFaceConfig({ dims: TINY_MODEL, layout: paramLayout(TINY_MODEL), weights }).num_labels, undefined, 'an MLM export has no labels');
});

test.serial('ttc export --finetuned exports a sweep\'s fine-tuned classifier with the member\'s dimensions; a file of another model is refused in one line', async (t) => {
  const config = tinyConfig({ budget: { kind: 'steps', steps: 1 } });
  const member = newRun(config);
  await trainRun(config, member, quiet);
  // the file as the sweep's fine-tuning writes it (coordinator/evaluation.ts): one flat F32 tensor
  const layout = paramLayout(TINY_MODEL, { kind: 'classifier', numClasses: NUM_CLASSES });
  const weights = Float32Array.from({ length: layout.total }, (_, i) => Math.cos(i) * 0.03);
  const dir = tempDir('export-ft');
  const file = path.join(dir, `${member.id}.safetensors`);
  fs.writeFileSync(file, encodeSafetensors({ weights: { dtype: 'F32', shape: [weights.length], data: weights } }, { devAccuracy: '0.5' }));
  await run(process.execPath, ['bin/ttc.mjs', 'export', '--run', member.dir, '--finetuned', file, '--out', path.join(dir, 'hf')]);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'hf', 'config.json'), 'utf8'));
  const hf = decodeSafetensors(fs.readFileSync(path.join(dir, 'hf', 'model.safetensors')));
  t.deepEqual(cfg.architectures, ['BertForSequenceClassification']);
  t.is(cfg.num_labels, NUM_CLASSES);
  const out = layout.byName.get('classifier.out_proj.weight')!; // ours [in, out], HF's [out, in]
  t.deepEqual(hf.tensors['classifier.weight'].shape, [NUM_CLASSES, TINY_MODEL.hidden]);
  t.is(hf.tensors['classifier.weight'].data[3 * TINY_MODEL.hidden + 5], weights[out.offset + 5 * NUM_CLASSES + 3]);
  const emb = layout.byName.get('embeddings.word_embeddings.weight')!;
  t.deepEqual(Array.from(hf.tensors['bert.embeddings.word_embeddings.weight'].data), Array.from(weights.subarray(emb.offset, emb.offset + emb.size)));
  for (const f of TOKENIZER_FILES) t.true(fs.existsSync(path.join(dir, 'hf', f)), f);

  const other = path.join(dir, 'other.safetensors');
  fs.writeFileSync(other, encodeSafetensors({ weights: { dtype: 'F32', shape: [weights.length + 7], data: new Float32Array(weights.length + 7) } }, {}));
  const refused = await run(process.execPath, ['bin/ttc.mjs', 'export', '--run', member.dir, '--finetuned', other, '--out', path.join(dir, 'hf2')]).then(() => undefined, (e: { code: number; stderr: string }) => e);
  t.truthy(refused, 'a file of another model is refused');
  t.is(refused!.code, 1);
  t.regex(refused!.stderr.trim(), /^ttc export: --finetuned .*other\.safetensors: \d+ weights are no classifier of this model \(layers \d+, hidden \d+\): pass the member it was fine-tuned from with --run$/);
  t.false(fs.existsSync(path.join(dir, 'hf2', 'model.safetensors')));
});

test.serial('ttc compress writes the compressed file of one cell (pretrained or fine-tuned), which ttc export reads; bad levels are refused in one line', async (t) => {
  const { r: member, ckptDir, layout, weights } = await trainedTiny(1);
  const dir = tempDir('compress');
  const file = path.join(dir, 'p50q4.ttcz');
  const r = await run(process.execPath, ['bin/ttc.mjs', 'compress', '--run', member.dir, '--method', 'prune+quant', '--sparsity', '0.5', '--bits', '4', '--out', file]);
  t.regex(r.stdout, /compressed .* \(sparsity 0\.5 \+ 4-bit\/channel\): [\d,]+ → [\d,]+ bytes/);
  // the same cell computed here: the one-shot global magnitude mask, then 4-bit per channel
  const mask = globalMagnitudeMask(weights, layout, 0.5, { embeddings: false });
  const expected = decodeCompressed(encodeCompressed(weights, layout, { quant: { bits: 4, granularity: 'channel', embeddings: false }, mask }), layout);
  t.deepEqual(Array.from(decodeCompressed(fs.readFileSync(file), layout)), Array.from(expected));
  await run(process.execPath, ['bin/ttc.mjs', 'export', '--checkpoint', ckptDir, '--compressed', file, '--out', path.join(dir, 'hf')]);
  t.true(fs.existsSync(path.join(dir, 'hf', 'model.safetensors')));

  // a fine-tuned classifier: compressed, then exported as a 10-class BertForSequenceClassification
  const clsLayout = paramLayout(TINY_MODEL, { kind: 'classifier', numClasses: NUM_CLASSES });
  const ft = path.join(dir, `${member.id}.safetensors`);
  const ftWeights = Float32Array.from({ length: clsLayout.total }, (_, i) => Math.sin(i * 0.7) * 0.04);
  fs.writeFileSync(ft, encodeSafetensors({ weights: { dtype: 'F32', shape: [ftWeights.length], data: ftWeights } }, {}));
  const q8 = path.join(dir, 'ft-q8.ttcz');
  await run(process.execPath, ['bin/ttc.mjs', 'compress', '--run', member.dir, '--finetuned', ft, '--method', 'quant', '--bits', '8', '--out', q8]);
  await run(process.execPath, ['bin/ttc.mjs', 'export', '--run', member.dir, '--compressed', q8, '--out', path.join(dir, 'hf-ft')]);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'hf-ft', 'config.json'), 'utf8'));
  t.deepEqual(cfg.architectures, ['BertForSequenceClassification']);
  t.is(cfg.num_labels, NUM_CLASSES);
  for (const f of TOKENIZER_FILES) t.true(fs.existsSync(path.join(dir, 'hf-ft', f)), f);

  for (const [args, why] of [
    [['--method', 'prune-iterative', '--sparsity', '0.5'], /^ttc compress: --method: expected quant, prune-oneshot or prune\+quant, got "prune-iterative" \(iterative pruning fine-tunes between rounds: run it in a sweep\)$/],
    [['--method', 'quant', '--bits', '9'], /^ttc compress: cell .*: bits must be an integer in \[2, 8\]$/],
    [['--method', 'prune-oneshot'], /^ttc compress: cell .*: sparsity must be a number in \[0, 1\)$/],
    [['--method', 'quant', '--bits', 'four'], /^ttc compress: --bits: expected a number, got "four"$/],
  ] as const) {
    const out = path.join(dir, 'refused.ttcz');
    const e = await run(process.execPath, ['bin/ttc.mjs', 'compress', '--run', member.dir, ...args, '--out', out]).then(() => undefined, (err: { code: number; stderr: string }) => err);
    t.truthy(e, `${args.join(' ')} is refused`);
    t.is(e!.code, 1);
    t.regex(e!.stderr.trim(), why);
    t.false(fs.existsSync(out));
  }
});
