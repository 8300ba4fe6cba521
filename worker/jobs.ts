/**
 * The evaluation jobs a worker runs for the compression + evaluation step: `cell` (compress a
 * fine-tuned model with one cell's method and measure it; iterative pruning fine-tunes inside the
 * job) and `cell-trained` (measure weights whose iterative-pruning rounds were fine-tuned
 * data-parallel already). It calls the same functions as a single-process evaluation
 * (compression/eval), so a job's result does not depend on which worker ran it.
 */
import { TtcError } from '../core/errors.ts';
import type { Config } from '../core/config/schema.ts';
import { evaluateCell, evaluateTrained } from '../compression/eval/index.ts';
import type { Blobs, CellResultWire, JobSpec } from '../protocol/index.ts';
import type { TaskFactory } from './tasks.ts';

function need(blobs: Blobs, name: string): Float32Array {
  const b = blobs[name];
  if (!b) throw new TtcError('TTC_ERR_PROTOCOL', `job input "${name}" was not sent`);
  return b;
}

export async function runJob(job: JobSpec, config: Config, inputs: Blobs, tasks: TaskFactory): Promise<CellResultWire> {
  const ctx = await tasks.evalContext(config, job.classificationSeed, job.selection);
  const r = job.kind === 'cell-trained'
    ? await evaluateTrained(ctx, need(inputs, 'trained'), inputs.mask ? Uint8Array.from(inputs.mask) : undefined, need(inputs, 'pretrained'), job.cell, {}, job.rounds)
    : await evaluateCell(ctx, need(inputs, 'finetuned'), need(inputs, 'pretrained'), job.cell, { seed: job.seed, finetune: job.finetune });
  const { artifacts: _artifacts, ...result } = r;
  return result;
}
