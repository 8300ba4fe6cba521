/**
 * The typed contracts that travel inside ttc's messages: what a ring trains (task spec), what an
 * evaluation job is (job spec) and what it returns (cell result). Each is a valibot schema, checked
 * on receipt like every frame; the TypeScript types of the domain (compression/eval's CellSpec and
 * CellResult) are checked at compile time to equal what the schemas accept, so the two cannot drift.
 */
import * as v from 'valibot';
import type { CellResult, RoundFinetuneOptions, RoundResult } from '../compression/eval/cells.ts';
import { METHODS, type CellSpec } from '../compression/grid.ts';
import { u32 } from '../wire/protocol/index.ts';

const int = () => v.pipe(v.number(), v.integer());
const finite = () => v.pipe(v.number(), v.finite());
/** JSON text of a resolved run config: validated again by the config schema (convict) on receipt. */
export const configJson = () => v.pipe(v.string(), v.maxLength(1 << 20));

/** The first N train / dev / test examples of the classification set (absent or 0 = all). */
/** Which classification examples a task uses (compression/eval/context.ts): the first N of each split, and the training examples held out for early stopping. */
export const selectionSchema = v.strictObject({ maxTrain: v.optional(u32()), maxDev: v.optional(u32()), maxTest: v.optional(u32()), stopExamples: v.optional(u32()) });
export type Selection = v.InferOutput<typeof selectionSchema>;

/** What a ring trains: MLM pretraining on the run's corpus, translation, or classification fine-tuning. */
export const taskSpecSchema = v.variant('kind', [
  v.strictObject({ kind: v.literal('mlm') }),
  /** translation (config.task "translation"): the run config says everything */
  v.strictObject({ kind: v.literal('translate') }),
  v.strictObject({
    kind: v.literal('classify'),
    classificationSeed: int(),
    selection: selectionSchema,
    /** global batch (all ranks); each rank takes batchSize / worldSize */
    batchSize: v.pipe(u32(), v.minValue(1)),
    orderSeed: u32(),
  }),
]);
export type TaskSpec = v.InferOutput<typeof taskSpecSchema>;

export const cellSpecSchema = v.strictObject({
  method: v.picklist(METHODS),
  bits: v.optional(int()),
  granularity: v.optional(v.picklist(['channel', 'tensor'])),
  embeddings: v.boolean(),
  sparsity: v.optional(finite()),
  rounds: v.optional(int()),
  stepsPerRound: v.optional(int()),
});

export const roundResultSchema = v.strictObject({ round: u32(), sparsity: finite(), trainLoss: finite(), devAccuracy: finite() });
const roundFinetuneSchema = v.strictObject({ batchSize: u32(), lr: finite(), warmupFraction: finite() });

const jobCommon = {
  config: configJson(),
  classificationSeed: int(),
  selection: selectionSchema,
  cell: cellSpecSchema,
};
/**
 * An evaluation job: `cell` compresses and evaluates a fine-tuned model (iterative pruning
 * fine-tunes inside the job); `cell-trained` measures weights whose iterative-pruning rounds were
 * fine-tuned data-parallel already. Its inputs travel as blobs before it.
 */
export const jobSpecSchema = v.variant('kind', [
  v.strictObject({ kind: v.literal('cell'), ...jobCommon, seed: int(), finetune: roundFinetuneSchema }),
  v.strictObject({ kind: v.literal('cell-trained'), ...jobCommon, rounds: v.array(roundResultSchema) }),
]);
export type JobSpec = v.InferOutput<typeof jobSpecSchema>;

export const cellResultSchema = v.strictObject({
  spec: cellSpecSchema,
  level: v.pipe(v.string(), v.maxLength(200)),
  bytesTotal: u32(),
  bytesNonEmbedding: u32(),
  devAccuracy: finite(),
  testAccuracy: finite(),
  valPerplexity: finite(),
  sparsity: v.optional(finite()),
  rounds: v.optional(v.array(roundResultSchema)),
});
/** What a job returns: a CellResult without its in-memory artifacts. */
export type CellResultWire = v.InferOutput<typeof cellResultSchema>;

// Compile-time: the schemas accept exactly the domain's types.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
export const SCHEMAS_MATCH_TYPES: [
  Same<v.InferOutput<typeof cellSpecSchema>, CellSpec>,
  Same<v.InferOutput<typeof roundResultSchema>, RoundResult>,
  Same<v.InferOutput<typeof roundFinetuneSchema>, RoundFinetuneOptions>,
  Same<CellResultWire, Omit<CellResult, 'artifacts'>>,
] = [true, true, true, true];
