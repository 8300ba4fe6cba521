/** `ttc export`: a checkpoint (or a compressed model file, or a sweep's fine-tuned classifier) → Hugging Face BERT safetensors + config.json, and the run's tokenizer. */
import path from 'node:path';
import { UsageError } from '../../core/errors.ts';
import { decodeCompressed } from '../../compression/index.ts';
import { loadCheckpoint, readCheckpointDims } from '../../ml/checkpoint/checkpoint.ts';
import { decodeSafetensors } from '../../ml/checkpoint/safetensors.ts';
import { classLabels, NUM_CLASSES } from '../../ml/data/classification.ts';
import { exportHuggingFace } from '../../ml/export/huggingface.ts';
import { paramLayout } from '../../ml/model/spec.ts';
import { outputDirFlag, parseFlags } from '../args.ts';
import { checkpointOf, readFileFlag, readFinetuned, tokenizerOf } from '../model-files.ts';

export const usage = `ttc export (--run runs/<id> | --checkpoint <checkpoint dir>) [--compressed <file> | --finetuned <file>] [--tokenizer <file>] --out <dir>

Writes model.safetensors + config.json in the Hugging Face BERT layout (BertForMaskedLM, or
BertForSequenceClassification for a fine-tuned classifier), and the run's tokenizer as
tokenizer.json + tokenizer_config.json + special_tokens_map.json: load both with
from_pretrained(<dir>) (AutoTokenizer gives exactly ttc's token ids).
  --run DIR          use the run's latest valid checkpoint
  --checkpoint DIR   use this checkpoint directory
  --compressed FILE  export this compressed model file instead (dequantized), with the model
                     dimensions of the checkpoint it was made from
  --finetuned FILE   export this fine-tuned classifier (a sweep's finetuned/<member>.safetensors),
                     with --run the member it was fine-tuned from (runs/<sweep>/members/<member>)
  --tokenizer FILE   the tokenizer of a checkpoint outside a run directory: the dataset cache's
                     tokenizer.json (<cacheDir>/<key>/tokenizer.json); by default the run's
  --out DIR          output directory`;

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, { run: { type: 'string' }, checkpoint: { type: 'string' }, compressed: { type: 'string' }, finetuned: { type: 'string' }, tokenizer: { type: 'string' }, out: { type: 'string' } }, usage);
  if (!values.out || (!values.run && !values.checkpoint)) throw new UsageError(`--out and one of --run / --checkpoint are required\n\n${usage}`);
  if (values.compressed && values.finetuned) throw new UsageError(`--compressed and --finetuned name two models: give one\n\n${usage}`);
  const out = outputDirFlag('--out', values.out);
  const dir = checkpointOf(values);
  const dims = readCheckpointDims(dir);
  let layout = paramLayout(dims);
  let weights: Float32Array;
  let source = dir;
  if (values.compressed) {
    const buf = readFileFlag('--compressed', values.compressed);
    // The file names its parameters: a classifier head means a fine-tuned model.
    const head = decodeSafetensors(buf, values.compressed).tensors['classifier.out_proj.bias'];
    if (head) layout = paramLayout(dims, { kind: 'classifier', numClasses: head.shape[0]! });
    weights = decodeCompressed(buf, layout);
    source = values.compressed;
  } else if (values.finetuned) {
    ({ layout, weights } = readFinetuned(values.finetuned, dims));
    source = values.finetuned;
  } else {
    weights = loadCheckpoint(dir, layout).weights;
  }
  // ttc's one classification task names its classes; another head size (or none) keeps the default names
  const labels = layout.byName.get('classifier.out_proj.bias')?.size === NUM_CLASSES ? classLabels() : undefined;
  const tok = await tokenizerOf(values, dims, (m) => console.error(m));
  if ('missing' in tok) console.error(`ttc export: no tokenizer exported: ${tok.missing}`);
  const tokenizer = 'tokenizer' in tok ? tok.tokenizer : undefined;
  const files = exportHuggingFace(out, { dims, layout, weights, labels, tokenizer, source: path.resolve(source) });
  console.log(`exported ${source} → ${files.join(', ')}`);
  return 0;
}

