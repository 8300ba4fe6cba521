/**
 * The model files the export and compress commands read: a run's (or a given) checkpoint, a file
 * named by a flag, and a sweep's fine-tuned classifier — each refused in one line when unusable.
 */
import fs from 'node:fs';
import { RunDirError, UsageError } from '../core/errors.ts';
import { checkpointsDir, listCheckpointDirs } from '../ml/checkpoint/checkpoint.ts';
import { decodeSafetensors } from '../ml/checkpoint/safetensors.ts';
import { paramLayout, type ModelDims, type ParamLayout } from '../ml/model/spec.ts';

/** The checkpoint directory of `--checkpoint`, else the latest of `--run`'s. */
export function checkpointOf(values: { run?: string; checkpoint?: string }): string {
  const dir = values.checkpoint ?? listCheckpointDirs(checkpointsDir(values.run!)).at(-1);
  if (!dir) throw new RunDirError(`${values.run} has no checkpoint`);
  return dir;
}

/** A file named by a flag, read whole. */
export function readFileFlag(flag: string, file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new UsageError(`${flag}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/**
 * A fine-tuned classifier as the sweep saves it: one flat F32 tensor "weights" in the classifier
 * layout of the member's dimensions; its length gives the number of classes.
 */
export function readFinetuned(file: string, dims: ModelDims): { layout: ParamLayout; weights: Float32Array } {
  const buf = readFileFlag('--finetuned', file);
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
