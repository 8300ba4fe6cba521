/**
 * Data-parallel fine-tuning of one model on the classification task, as a short driver over the
 * distributed driver (formation.ts) and the one fine-tuning loop (ml/loop/finetune.ts): the
 * connected workers form a ring with the classification task, start from the same classifier
 * weights (the pretrained encoder + a head drawn from the seed, or given weights with a pruning
 * mask held), and run exactly the single-process fine-tuning's batches and schedule
 * (compression/eval/finetune.ts), so the result matches it up to float rounding. A worker lost
 * midway restarts the fine-tuning on the remaining workers (fine-tunes are short: no checkpoints),
 * at most 3 times.
 */
import type { Config } from '../core/config/schema.ts';
import { deriveSeed } from '../core/rng.ts';
import { freshState } from '../ml/loop/executor.ts';
import { finetuneLoop, type EarlyStopping, type FinetuneOutcome } from '../ml/loop/finetune.ts';
import { NUM_CLASSES } from '../ml/data/classification.ts';
import { paramLayout } from '../ml/model/spec.ts';
import { classifierWeightsFrom } from '../ml/train/classifier.ts';
import type { Selection } from '../protocol/index.ts';
import { RunError, type Driver } from './formation.ts';

export interface DistributedFinetune {
  config: Config;
  /** start from a pretrained MLM model (encoder copied, head drawn from the seed) … */
  pretrained?: Float32Array;
  /** … or from classifier weights (rounds of iterative pruning) */
  initial?: Float32Array;
  /** pruning mask (classifier layout, 1 = keep) held through the fine-tuning */
  mask?: Uint8Array;
  classificationSeed: number;
  selection: Selection;
  opts: { steps: number; batchSize: number; lr: number; warmupFraction: number; seed: number; earlyStopping?: EarlyStopping };
  /** names this fine-tuning's rings in logs */
  label: string;
  timeoutMs: number;
  waitForWorkersSeconds: number;
  /** each step's loss as it is taken (step counts from 1) */
  onStep?: (step: number, loss: number) => void;
}

export async function finetuneDistributed(driver: Driver, job: DistributedFinetune): Promise<FinetuneOutcome & { workers: number }> {
  const { config, opts } = job;
  const clsLayout = paramLayout(config.model, { kind: 'classifier', numClasses: NUM_CLASSES });
  const initial = job.initial ?? classifierWeightsFrom(paramLayout(config.model), job.pretrained!, clsLayout, deriveSeed(opts.seed, 1), config.model.initStd);
  if (job.mask) for (let i = 0; i < initial.length; i++) if (job.mask[i] === 0) initial[i] = 0;
  let workers = 0;
  const outcome = await driver.withRing(
    {
      config,
      task: { kind: 'classify', classificationSeed: job.classificationSeed, selection: job.selection, batchSize: opts.batchSize, orderSeed: deriveSeed(opts.seed, 2) },
      label: job.label,
      timeoutMs: job.timeoutMs,
      setupTimeoutMs: Math.max(job.timeoutMs, 180_000),
    },
    {
      maxAttempts: 3,
      minWorkers: () => 1,
      waitSeconds: job.waitForWorkersSeconds,
      // Every rank takes an equal slice of the global batch: use the most workers that divide it.
      choose: (all) => {
        let n = all.length;
        while (opts.batchSize % n !== 0) n -= 1;
        return all.slice(0, n);
      },
      onFailure: (e) => driver.log.error(`fine-tuning ${job.label} failed: ${e.message}; restarting it on the remaining workers`),
    },
    async (ring) => {
      if (opts.batchSize > ring.trainCount) throw new RunError(`fine-tuning batch ${opts.batchSize} exceeds the ${ring.trainCount} training examples`);
      await ring.load(freshState(initial), job.mask);
      workers = ring.worldSize;
      return finetuneLoop(ring, opts, job.onStep);
    },
  );
  return { ...outcome, workers };
}
