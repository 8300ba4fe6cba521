/**
 * The jobs a worker runs for the compression + evaluation step: `cell` (one compression cell of a
 * fine-tuned model → accuracy, perplexity, real file bytes; iterative pruning fine-tunes inside the
 * job). It calls the same function as a single-process evaluation (compression/eval), so a job's result
 * does not depend on which worker ran it. (Fine-tuning itself is data-parallel: coordinator/finetune.ts.)
 */
import { resolveConfig } from '../core/config/load.ts';
import type { Config } from '../core/config/schema.ts';
import { evaluateCell, evaluateTrained, loadEvalContext, type CellSpec, type EvalContext, type RoundFinetuneOptions, type RoundResult } from '../compression/eval/index.ts';
import type { Blobs } from '../protocol/blobs.ts';

export interface EvalSelection {
  maxTrain?: number;
  maxDev?: number;
  maxTest?: number;
}

export interface CellJobSpec {
  config: unknown;
  classificationSeed: number;
  eval: EvalSelection;
  cell: CellSpec;
  seed: number;
  finetune: RoundFinetuneOptions;
  /** cell-trained: the iterative-pruning rounds already run */
  rounds?: RoundResult[];
}

export interface JobOutput {
  result: unknown;
  blobs: Blobs;
}

function need(blobs: Blobs, name: string): Float32Array {
  const b = blobs[name];
  if (!b) throw new Error(`job input "${name}" was not sent`);
  return b;
}

export class JobRunner {
  private ctx: { key: string; ctx: EvalContext } | undefined;

  /** The evaluation context (tokenizer, encoded classification set, validation batches), cached for the last config. */
  async context(rawConfig: unknown, classificationSeed: number, sel: EvalSelection, ensureBackend: (c: Config) => Promise<unknown>): Promise<EvalContext> {
    const config = resolveConfig(rawConfig);
    await ensureBackend(config);
    const key = JSON.stringify([config.model, config.seed, config.data, config.cacheDir, config.train.batchSize, classificationSeed, sel]);
    if (this.ctx?.key !== key) this.ctx = { key, ctx: await loadEvalContext({ config, classificationSeed, ...sel }) };
    return this.ctx.ctx;
  }

  async run(kind: string, specJson: string, blobs: Blobs, ensureBackend: (c: Config) => Promise<unknown>): Promise<JobOutput> {
    const spec = JSON.parse(specJson) as CellJobSpec;
    const ctx = await this.context(spec.config, spec.classificationSeed, spec.eval ?? {}, ensureBackend);
    if (kind === 'cell-trained') {
      // Iterative pruning whose rounds were fine-tuned data-parallel: measure the trained weights.
      const mask = blobs.mask ? Uint8Array.from(blobs.mask) : undefined;
      const r = await evaluateTrained(ctx, need(blobs, 'trained'), mask, need(blobs, 'pretrained'), spec.cell, {}, spec.rounds);
      return { result: r, blobs: {} };
    }
    if (kind === 'cell') {
      const r = await evaluateCell(ctx, need(blobs, 'finetuned'), need(blobs, 'pretrained'), spec.cell, { seed: spec.seed, finetune: spec.finetune });
      return { result: { ...r, artifacts: undefined }, blobs: {} };
    }
    throw new Error(`unknown job kind "${kind}"`);
  }
}
