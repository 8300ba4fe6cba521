/**
 * What `ttc status` receives: the status of a coordinator, one schema per kind — a run server
 * (`server`: its workers and queue, the live view of the running run), a single-run coordinator
 * (`run`: the live training view), or the evaluation step's coordinator (`evaluation`). Numbers a
 * run does not know yet (a loss before the first step) are null, never NaN.
 */
import * as v from 'valibot';
import { u32 } from '../wire/protocol/index.ts';

const text = (max = 4096) => v.pipe(v.string(), v.maxLength(max));
const num = () => v.pipe(v.number(), v.finite());
const maybe = () => v.nullable(num());

export const workerViewSchema = v.strictObject({ name: text(128), rank: v.nullable(u32()), remote: text(300), backend: v.nullable(text(300)) });
export type WorkerView = v.InferOutput<typeof workerViewSchema>;

const budgetSchema = v.strictObject({ kind: v.picklist(['flops', 'seconds', 'steps']), flops: num(), seconds: num(), steps: num(), calibrationSteps: num() });

/** The live view of a training run (a single-run coordinator's whole status; a run server's running run). */
const trainingEntries = {
  runId: text(200),
  runDir: text(),
  phase: text(),
  formation: u32(),
  uptimeSeconds: num(),
  workers: v.array(workerViewSchema),
  step: u32(),
  totalSteps: u32(),
  budget: budgetSchema,
  budgetFraction: maybe(),
  etaSeconds: maybe(),
  flopsUsed: num(),
  secondsUsed: num(),
  tokensSeen: num(),
  trainLoss: maybe(),
  valLoss: maybe(),
  tokensPerSecond: maybe(),
  lastCheckpointStep: u32(),
  failures: v.array(text()),
};
export const trainingViewSchema = v.strictObject(trainingEntries);
export type TrainingView = v.InferOutput<typeof trainingViewSchema>;

export const RUN_STATES = ['queued', 'running', 'done', 'failed', 'cancelled'] as const;
export type RunState = (typeof RUN_STATES)[number];

/** One run of a run server's queue (queue.json holds these). */
export const runRecordSchema = v.strictObject({
  id: text(200),
  kind: v.picklist(['train', 'sweep']),
  dir: text(),
  state: v.picklist(RUN_STATES),
  submittedAt: text(64),
  startedAt: v.optional(text(64)),
  finishedAt: v.optional(text(64)),
  /** the failure or cancellation reason */
  error: v.optional(text(8192)),
  /** what the run is doing now, and how far that stage is */
  stage: v.optional(text()),
  stageDone: v.optional(u32()),
  stageTotal: v.optional(u32()),
  /** the end result in one line (final validation loss, or the sweep's best sizes) */
  result: v.optional(text(8192)),
});
export type RunRecord = v.InferOutput<typeof runRecordSchema>;

/** A finished training run's summary.json. */
export const runSummarySchema = v.looseObject({
  runId: text(200),
  steps: u32(),
  totalSteps: u32(),
  completed: v.boolean(),
  finalValLoss: v.nullable(v.number()),
});

export const statusSchema = v.variant('kind', [
  v.strictObject({
    kind: v.literal('server'),
    phase: text(),
    outputDir: text(),
    /** the settings this server forces onto every run (`ttc serve --set`) */
    overrides: v.record(v.string(), v.unknown()),
    workers: v.array(workerViewSchema),
    runs: v.array(v.strictObject({ ...runRecordSchema.entries, position: v.optional(u32()) })),
    current: v.nullable(v.strictObject({ id: text(200), training: v.optional(trainingViewSchema) })),
    /** `--run ID` of a finished training run: its summary */
    summary: v.optional(runSummarySchema),
  }),
  v.strictObject({ kind: v.literal('run'), ...trainingEntries }),
  v.strictObject({ kind: v.literal('evaluation'), runId: text(200), phase: text(), workers: v.array(workerViewSchema) }),
]);
export type Status = v.InferOutput<typeof statusSchema>;
export type ServerStatus = Extract<Status, { kind: 'server' }>;
export type RunStatus = Extract<Status, { kind: 'run' }>;

/** NaN and ±Infinity (a loss before the first step, a rate before the first timing) become null. */
export const orNull = (x: number | undefined): number | null => (x === undefined || !Number.isFinite(x) ? null : x);
