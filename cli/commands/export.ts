/** `ttc export`: a checkpoint (or a compressed model file, or a sweep's fine-tuned classifier) → Hugging Face BERT safetensors + config.json. */
import fs from 'node:fs';
import path from 'node:path';
import { RunDirError, UsageError } from '../../core/errors.ts';
import { decodeCompressed } from '../../compression/index.ts';
import { checkpointsDir, listCheckpointDirs, loadCheckpoint, readCheckpointDims } from '../../ml/checkpoint/checkpoint.ts';
import { decodeSafetensors } from '../../ml/checkpoint/safetensors.ts';
import { classLabels, NUM_CLASSES } from '../../ml/data/classification.ts';
import { exportHuggingFace } from '../../ml/export/huggingface.ts';
import { paramLayout } from '../../ml/model/spec.ts';
import { outputDirFlag, parseFlags } from '../args.ts';

export const usage = `ttc export (--run runs/<id> | --checkpoint <checkpoint dir>) [--compressed <file> | --finetuned <file>] --out <dir>

Writes model.safetensors + config.json in the Hugging Face BERT layout (BertForMaskedLM, or
BertForSequenceClassification for a fine-tuned classifier): load with from_pretrained(<dir>).
  --run DIR          use the run's latest valid checkpoint
  --checkpoint DIR   use this checkpoint directory
  --compressed FILE  export this compressed model file instead (dequantized), with the model
                     dimensions of the checkpoint it was made from
  --finetuned FILE   export this fine-tuned classifier (a sweep's finetuned/<member>.safetensors),
                     with --run the member it was fine-tuned from (runs/<sweep>/members/<member>)
  --out DIR          output directory`;

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, { run: { type: 'string' }, checkpoint: { type: 'string' }, compressed: { type: 'string' }, finetuned: { type: 'string' }, out: { type: 'string' } }, usage);
  if (!values.out || (!values.run && !values.checkpoint)) throw new UsageError(`--out and one of --run / --checkpoint are required\n\n${usage}`);
  if (values.compressed && values.finetuned) throw new UsageError(`--compressed and --finetuned name two models: give one\n\n${usage}`);
  const out = outputDirFlag('--out', values.out);
  const dir = values.checkpoint ?? listCheckpointDirs(checkpointsDir(values.run!)).at(-1);
  if (!dir) throw new RunDirError(`${values.run} has no checkpoint`);
  const dims = readCheckpointDims(dir);
  let layout = paramLayout(dims);
  let weights: Float32Array;
  let source = dir;
  let labels: string[] | undefined;
  if (values.compressed) {
    let buf: Buffer;
    try {
      buf = fs.readFileSync(values.compressed);
    } catch (e) {
      throw new UsageError(`--compressed: cannot read ${values.compressed} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    // The file names its parameters: a classifier head means a fine-tuned model.
    const head = decodeSafetensors(buf, values.compressed).tensors['classifier.out_proj.bias'];
    if (head) {
      layout = paramLayout(dims, { kind: 'classifier', numClasses: head.shape[0]! });
      // ttc's one classification task names its classes; another head size keeps the default names
      if (head.shape[0] === NUM_CLASSES) labels = classLabels();
    }
    weights = decodeCompressed(buf, layout);
    source = values.compressed;
  } else if (values.finetuned) {
    ({ layout, weights } = readFinetuned(values.finetuned, dims));
    if (layout.byName.get('classifier.out_proj.bias')!.size === NUM_CLASSES) labels = classLabels();
    source = values.finetuned;
  } else {
    weights = loadCheckpoint(dir, layout).weights;
  }
  const files = exportHuggingFace(out, { dims, layout, weights, labels, source: path.resolve(source) });
  console.log(`exported ${source} → ${files.join(', ')}`);
  return 0;
}

/**
 * A fine-tuned classifier as the sweep saves it: one flat F32 tensor "weights" in the classifier
 * layout of the member's dimensions; its length gives the number of classes.
 */
function readFinetuned(file: string, dims: ReturnType<typeof readCheckpointDims>): { layout: ReturnType<typeof paramLayout>; weights: Float32Array } {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new UsageError(`--finetuned: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const t = decodeSafetensors(buf, file).tensors.weights;
  if (!t || t.dtype !== 'F32' || t.shape.length !== 1) throw new UsageError(`--finetuned ${file}: not a fine-tuned model file (expected one F32 tensor "weights")`);
  // total(C) = total(1) + (C - 1)·(hidden + 1): the head's output projection grows by a column and a bias per class
  const one = paramLayout(dims, { kind: 'classifier', numClasses: 1 }).total;
  const classes = (t.shape[0]! - one) / (dims.hidden + 1) + 1;
  if (!Number.isInteger(classes) || classes < 2) {
    throw new UsageError(`--finetuned ${file}: ${t.shape[0]} weights are no classifier of this model (layers ${dims.layers}, hidden ${dims.hidden}): pass the member it was fine-tuned from with --run`);
  }
  return { layout: paramLayout(dims, { kind: 'classifier', numClasses: classes }), weights: t.data as Float32Array };
}
