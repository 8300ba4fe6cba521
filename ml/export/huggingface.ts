/**
 * Export to the Hugging Face BERT layout: `model.safetensors` + `config.json` that
 * `BertForMaskedLM` (pretrained checkpoints) or `BertForSequenceClassification` (fine-tuned ones)
 * load with `from_pretrained`. Our parameter names already follow BERT's; export adds the `bert.`
 * prefix, transposes dense weights to PyTorch's [out, in], writes the tied decoder explicitly, a zero
 * token-type embedding (we use one segment), and maps our classification head (first token → dense →
 * tanh → dense) onto BERT's pooler + classifier, which is the same computation. Compressed models are
 * exported dequantized (float32), with the zeros of pruning kept. With the model's tokenizer, its
 * tokenizer.json, tokenizer_config.json and special_tokens_map.json are written too (hf-tokenizer.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { encodeSafetensors, type SafeTensor } from '../checkpoint/safetensors.ts';
import { LAYER_NORM_EPS } from '../model/ops.ts';
import type { ModelDims, ParamLayout } from '../model/spec.ts';
import type { Tokenizer } from '../data/tokenizer.ts';
import { writeHuggingFaceTokenizer } from './hf-tokenizer.ts';

export interface ExportOptions {
  dims: ModelDims;
  layout: ParamLayout;
  weights: Float32Array;
  /** the classes' names when the layout has the classifier head (default LABEL_0, LABEL_1, …) */
  labels?: string[];
  initStd?: number;
  source?: string;
  /** the tokenizer the model was trained with: exported next to config.json when given */
  tokenizer?: Tokenizer;
}

function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

export function huggingFaceName(name: string): string {
  if (name.startsWith('classifier.dense.')) return name.replace('classifier.dense.', 'bert.pooler.dense.');
  if (name.startsWith('classifier.out_proj.')) return name.replace('classifier.out_proj.', 'classifier.');
  if (name.startsWith('cls.')) return name;
  return `bert.${name}`;
}

export function huggingFaceTensors(o: ExportOptions): Record<string, SafeTensor> {
  const out: Record<string, SafeTensor> = {};
  for (const s of o.layout.specs) {
    const data = o.weights.subarray(s.offset, s.offset + s.size);
    if (s.kind === 'dense') {
      const [inDim, outDim] = s.shape;
      out[huggingFaceName(s.name)] = { dtype: 'F32', shape: [outDim, inDim], data: transpose(data, inDim, outDim) };
    } else {
      out[huggingFaceName(s.name)] = { dtype: 'F32', shape: s.shape, data: Float32Array.from(data) };
    }
  }
  const d = o.dims;
  out['bert.embeddings.token_type_embeddings.weight'] = { dtype: 'F32', shape: [1, d.hidden], data: new Float32Array(d.hidden) };
  const mlm = o.layout.byName.has('cls.predictions.bias');
  if (mlm) {
    out['cls.predictions.decoder.weight'] = out['bert.embeddings.word_embeddings.weight'];
    out['cls.predictions.decoder.bias'] = out['cls.predictions.bias'];
  }
  return out;
}

export function huggingFaceConfig(o: ExportOptions): Record<string, unknown> {
  const d = o.dims;
  const mlm = o.layout.byName.has('cls.predictions.bias');
  const base: Record<string, unknown> = {
    architectures: [mlm ? 'BertForMaskedLM' : 'BertForSequenceClassification'],
    model_type: 'bert',
    vocab_size: d.vocab,
    hidden_size: d.hidden,
    num_hidden_layers: d.layers,
    num_attention_heads: d.heads,
    intermediate_size: d.ffn,
    hidden_act: 'gelu',
    hidden_dropout_prob: 0,
    attention_probs_dropout_prob: 0,
    max_position_embeddings: d.seqLen,
    type_vocab_size: 1,
    initializer_range: o.initStd ?? 0.02,
    layer_norm_eps: LAYER_NORM_EPS,
    pad_token_id: 0,
    position_embedding_type: 'absolute',
    tie_word_embeddings: true,
    torch_dtype: 'float32',
  };
  if (!mlm) {
    // without num_labels, from_pretrained builds a 2-class head and fails on the weights' shape
    const numLabels = o.layout.byName.get('classifier.out_proj.bias')!.size;
    if (o.labels && o.labels.length !== numLabels) throw new Error(`export: ${o.labels.length} label names for a ${numLabels}-class head`);
    const labels = o.labels ?? Array.from({ length: numLabels }, (_, i) => `LABEL_${i}`); // Hugging Face's own default names
    base.num_labels = numLabels;
    base.id2label = Object.fromEntries(labels.map((l, i) => [String(i), l]));
    base.label2id = Object.fromEntries(labels.map((l, i) => [l, i]));
  }
  return base;
}

/** Writes model.safetensors and config.json (and the tokenizer's files) into outDir; returns the file paths. */
export function exportHuggingFace(outDir: string, o: ExportOptions): string[] {
  if (o.tokenizer && o.tokenizer.vocabSize > o.dims.vocab) throw new Error(`export: a tokenizer of ${o.tokenizer.vocabSize} ids for a vocabulary of ${o.dims.vocab}`);
  fs.mkdirSync(outDir, { recursive: true });
  const model = path.join(outDir, 'model.safetensors');
  const config = path.join(outDir, 'config.json');
  fs.writeFileSync(model, encodeSafetensors(huggingFaceTensors(o), { format: 'pt', source: o.source ?? 'ttc' }));
  fs.writeFileSync(config, `${JSON.stringify(huggingFaceConfig(o), null, 2)}\n`);
  const tokenizer = o.tokenizer ? writeHuggingFaceTokenizer(outDir, o.tokenizer, { modelMaxLength: o.dims.seqLen }) : [];
  return [model, config, ...tokenizer];
}
