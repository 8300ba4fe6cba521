/**
 * The model files the export and compress commands read: a run's (or a given) checkpoint, a file
 * named by a flag, a sweep's fine-tuned classifier and the run's tokenizer — each refused in one
 * line when unusable.
 */
import fs from 'node:fs';
import path from 'node:path';
import { resolveConfig } from '../core/config/load.ts';
import { RunDirError, UsageError } from '../core/errors.ts';
import { openRunDir, runDirFor } from '../core/run/rundir.ts';
import { checkpointsDir, listCheckpointDirs } from '../ml/checkpoint/checkpoint.ts';
import { decodeSafetensors } from '../ml/checkpoint/safetensors.ts';
import { decodeTokenizerFile } from '../ml/data/dataset.ts';
import type { Tokenizer } from '../ml/data/tokenizer.ts';
import { paramLayout, type ModelDims, type ParamLayout } from '../ml/model/spec.ts';
import { datasetFor } from '../ml/train/data.ts';

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

/**
 * The tokenizer the model was trained with: `--tokenizer` (a dataset cache's tokenizer.json), else
 * the one of the run (`--run`, or the run a `--checkpoint` lies in: runs/<id>/checkpoints/<step>),
 * rebuilt from its config exactly as training did (read from the dataset cache when it is there).
 * Undefined, with the reason, for a checkpoint outside any run directory.
 */
export async function tokenizerOf(
  values: { run?: string; checkpoint?: string; tokenizer?: string },
  dims: ModelDims,
  info: (msg: string) => void,
): Promise<{ tokenizer: Tokenizer } | { missing: string }> {
  let tokenizer: Tokenizer;
  if (values.tokenizer) {
    try {
      tokenizer = decodeTokenizerFile(readFileFlag('--tokenizer', values.tokenizer).toString('utf8'));
    } catch (e) {
      if (e instanceof UsageError) throw e;
      throw new UsageError(`--tokenizer ${values.tokenizer}: not a ttc tokenizer file (a dataset cache's tokenizer.json): ${(e as Error).message}`);
    }
  } else {
    const parent = values.checkpoint ? path.dirname(path.resolve(values.checkpoint)) : undefined;
    const runDir = values.run ?? (parent && path.basename(parent) === 'checkpoints' ? path.dirname(parent) : undefined);
    if (!runDir || !fs.existsSync(runDirFor(runDir).configFile)) {
      return { missing: `${values.checkpoint} is not in a run directory: pass --run, or --tokenizer <cacheDir>/<key>/tokenizer.json` };
    }
    const config = resolveConfig(openRunDir(runDir).storedConfig);
    const { vocab, seqLen } = config.model;
    if (vocab !== dims.vocab || seqLen !== dims.seqLen) {
      throw new RunDirError(`${runDir}/config.json says vocab ${vocab}, seqLen ${seqLen}; the checkpoint has vocab ${dims.vocab}, seqLen ${dims.seqLen}: not the run of this checkpoint`);
    }
    tokenizer = (await datasetFor(config, info, info)).tokenizer;
  }
  if (tokenizer.vocabSize > dims.vocab) {
    throw new UsageError(`the tokenizer has ${tokenizer.vocabSize} ids, the model's vocabulary ${dims.vocab}: not the model's tokenizer`);
  }
  return { tokenizer };
}
