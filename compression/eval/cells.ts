/**
 * The evaluation of one compression cell (the grid is compression/grid.ts): compress the fine-tuned
 * classifier with the cell's method, write the real compressed file (in memory), decode it, and measure what the decoded
 * weights do — so what is evaluated is exactly what the file holds, and the byte sizes are the
 * file's. Alongside, the pretrained MLM weights compressed the same way give the validation
 * perplexity. Pure: inputs in, results out, deterministic from the inputs and seeds (see
 * docs/evaluation.md).
 */
import {
  applyMask,
  compressedSizes,
  compressedWeights,
  decodeCompressed,
  encodeCompressed,
  globalMagnitudeMask,
  iterativeSchedule,
  participatingKinds,
  sparsityOf,
  type CompressSpec,
} from '../index.ts';
import { ClassifierTrainer } from '../../ml/train/classifier.ts';
import { MlmTrainer } from '../../ml/train/trainer.ts';
import type { EvalContext } from './context.ts';
import { deriveSeed } from '../../core/rng.ts';
import { finetuneClassifier, type FinetuneOptions } from './finetune.ts';
import { cellLabel, checkCellSpec, CellSpecError, compressSpecOf, prunes, quantizes, type CellSpec } from '../grid.ts';

/** Fine-tuning hyper-parameters for iterative pruning's rounds (steps = spec.stepsPerRound; the seed comes from EvaluateCellOptions.seed). */
export type RoundFinetuneOptions = Pick<FinetuneOptions, 'batchSize' | 'lr' | 'warmupFraction'>;

export interface EvaluateCellOptions {
  /** Seeds iterative pruning's fine-tuning rounds (round r uses deriveSeed(seed, 100 + r)). Other methods draw nothing. */
  seed: number;
  /** Needed by prune-iterative. */
  finetune?: RoundFinetuneOptions;
  /** Return the file bytes, the decoded weights, the weights before encoding and the mask (for tests and for writing the file). */
  returnArtifacts?: boolean;
  /** Provenance strings stored in the file's __metadata__ as user.<key> (they count in its bytes). */
  metadata?: Record<string, string>;
}

export interface RoundResult {
  round: number;
  /** this round's target sparsity (cubic schedule) */
  sparsity: number;
  trainLoss: number;
  devAccuracy: number;
}

export interface CellArtifacts {
  /** The compressed file exactly as encodeCompressed wrote it (bytesTotal = file.length). */
  file: Buffer;
  /** decodeCompressed(file): the weights that were evaluated (classifier layout). */
  decoded: Float32Array;
  /** The weights handed to encodeCompressed (after pruning / iterative fine-tuning, before quantization). */
  trained: Float32Array;
  /** The pruning mask (classifier layout, 1 = keep), pruning methods only. */
  mask?: Uint8Array;
}

export interface CellResult {
  spec: CellSpec;
  /** cellLabel(spec) */
  level: string;
  /** bytes of the compressed classifier file (compressedSizes of the encoded bytes) */
  bytesTotal: number;
  /** bytesTotal − the embedding tables' data bytes (header counted here) */
  bytesNonEmbedding: number;
  devAccuracy: number;
  testAccuracy: number;
  /** MLM validation perplexity of the pretrained MLM weights compressed with the same spec (pruning: a one-shot mask at the final sparsity) */
  valPerplexity: number;
  /** pruning methods: measured fraction of exact zeros among the participating weights of the evaluated weights */
  sparsity?: number;
  /** prune-iterative: one entry per round */
  rounds?: RoundResult[];
  artifacts?: CellArtifacts;
}

/** Dev and test accuracy of classifier weights (ctx.clsLayout). */
export async function classifierAccuracy(ctx: EvalContext, weights: Float32Array): Promise<{ dev: number; test: number }> {
  const t = new ClassifierTrainer(ctx.trainerOptions, ctx.numClasses, weights);
  try {
    return { dev: await t.accuracy(ctx.devBatches), test: await t.accuracy(ctx.testBatches) };
  } finally {
    t.dispose();
  }
}

/** Predicted class of every example of a split, for classifier weights. */
export async function classifierPredictions(ctx: EvalContext, weights: Float32Array, split: 'dev' | 'test'): Promise<Int32Array> {
  const t = new ClassifierTrainer(ctx.trainerOptions, ctx.numClasses, weights);
  try {
    return await t.predict(split === 'dev' ? ctx.devBatches : ctx.testBatches);
  } finally {
    t.dispose();
  }
}

/** exp(mean masked-LM loss) of MLM weights (ctx.mlmLayout) over the fixed validation batches. */
export async function mlmPerplexity(ctx: EvalContext, mlmWeights: Float32Array): Promise<number> {
  const t = new MlmTrainer(ctx.trainerOptions, mlmWeights);
  try {
    return Math.exp(await t.evaluate(ctx.valBatches));
  } finally {
    t.dispose();
  }
}

/** The pretrained MLM weights compressed as the cell says (pruning: one-shot mask at the final sparsity). */
export function compressMlm(ctx: EvalContext, pretrainedMlm: Float32Array, spec: CellSpec): Float32Array {
  const mask = prunes(spec.method) ? globalMagnitudeMask(pretrainedMlm, ctx.mlmLayout, spec.sparsity!, { embeddings: spec.embeddings }) : undefined;
  return compressedWeights(pretrainedMlm, ctx.mlmLayout, compressSpecOf(spec, mask));
}

/** Compresses the fine-tuned classifier with the cell's method, encodes, decodes, evaluates. */
export async function evaluateCell(ctx: EvalContext, finetuned: Float32Array, pretrainedMlm: Float32Array, spec: CellSpec, opts: EvaluateCellOptions): Promise<CellResult> {
  checkCellSpec(spec);
  const L = ctx.clsLayout;
  if (finetuned.length !== L.total) throw new RangeError(`fine-tuned weights: expected ${L.total} floats (classifier layout), got ${finetuned.length}`);
  if (pretrainedMlm.length !== ctx.mlmLayout.total) throw new RangeError(`pretrained weights: expected ${ctx.mlmLayout.total} floats (MLM layout), got ${pretrainedMlm.length}`);
  const pruneOpts = { embeddings: spec.embeddings };

  let trained: Float32Array = Float32Array.from(finetuned);
  let mask: Uint8Array | undefined;
  let rounds: RoundResult[] | undefined;
  if (spec.method === 'prune-oneshot' || spec.method === 'prune+quant') {
    mask = globalMagnitudeMask(trained, L, spec.sparsity!, pruneOpts);
    applyMask(trained, mask);
  } else if (spec.method === 'prune-iterative') {
    if (!opts.finetune) throw new CellSpecError('prune-iterative needs opts.finetune (batchSize, lr, warmupFraction)');
    rounds = [];
    const targets = iterativeSchedule(spec.sparsity!, spec.rounds!);
    for (let r = 0; r < targets.length; r++) {
      mask = globalMagnitudeMask(trained, L, targets[r], { ...pruneOpts, previousMask: mask });
      applyMask(trained, mask);
      const ft = await finetuneClassifier(ctx, trained, { ...opts.finetune, steps: spec.stepsPerRound!, seed: deriveSeed(opts.seed, 100 + r), mask });
      trained = ft.weights;
      rounds.push({ round: r + 1, sparsity: targets[r], trainLoss: ft.trainLoss, devAccuracy: ft.devAccuracy });
    }
  }

  return evaluateTrained(ctx, trained, mask, pretrainedMlm, spec, opts, rounds);
}



/**
 * The measuring half of a cell: encode the (already pruned / fine-tuned) weights with the cell's
 * method, decode the file, evaluate what it holds. evaluateCell calls it after its own pruning and
 * fine-tuning; the distributed evaluation step calls it after data-parallel iterative pruning.
 */
export async function evaluateTrained(
  ctx: EvalContext,
  trained: Float32Array,
  mask: Uint8Array | undefined,
  pretrainedMlm: Float32Array,
  spec: CellSpec,
  opts: Pick<EvaluateCellOptions, 'metadata' | 'returnArtifacts'>,
  rounds?: RoundResult[],
): Promise<CellResult> {
  const L = ctx.clsLayout;
  const pruneOpts = { embeddings: spec.embeddings };
  const file = encodeCompressed(trained, L, compressSpecOf(spec, mask, opts.metadata));
  const sizes = compressedSizes(file, L);
  const decoded = decodeCompressed(file, L);
  const acc = await classifierAccuracy(ctx, decoded);
  const valPerplexity = await mlmPerplexity(ctx, compressMlm(ctx, pretrainedMlm, spec));

  const result: CellResult = {
    spec: { ...spec },
    level: cellLabel(spec),
    bytesTotal: sizes.totalBytes,
    bytesNonEmbedding: sizes.nonEmbeddingBytes,
    devAccuracy: acc.dev,
    testAccuracy: acc.test,
    valPerplexity,
  };
  if (prunes(spec.method)) result.sparsity = sparsityOf(decoded, L, participatingKinds(pruneOpts));
  if (rounds) result.rounds = rounds;
  if (opts.returnArtifacts) result.artifacts = { file, decoded, trained, mask };
  return result;
}
