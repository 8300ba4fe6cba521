/**
 * ttc's application protocol: the messages between the coordinator and its workers, and between
 * the CLI and a coordinator, each a strict valibot schema (wire/protocol validates every frame
 * against it before anyone sees it). Ring traffic carries a `formation` number: each ring
 * formation gets a new one, and a worker refuses a message for a formation it is not in
 * (TTC_ERR_STALE_FORMATION) or one its lifecycle state does not accept
 * (TTC_ERR_UNEXPECTED_MESSAGE, worker/lifecycle.ts) with `worker.refused`, never silently.
 * Configs travel as JSON text and are validated again by the config schema on receipt; tensors and
 * other bulk data travel as binary blobs (protocol/blobs.ts), never as JSON numbers.
 */
import * as v from 'valibot';
import { RUN_ID, RUN_ID_RULE } from '../core/config/schema.ts';
import { ERROR_CODE_LIST } from '../core/errors.ts';
import { bytes, defineMessage, float32Array, shortString, u32 } from '../wire/protocol/index.ts';
import { cellResultSchema, configJson, jobSpecSchema, taskSpecSchema } from './specs.ts';
import { statusSchema } from './status.ts';

const finite = () => v.pipe(v.number(), v.finite());
const host = () => shortString(255);
const reason = (max = 2048) => v.pipe(v.string(), v.maxLength(max));
const errorCode = () => v.picklist(ERROR_CODE_LIST);
/** Largest blob part per frame: 2 Mi floats = 8 MiB, well under maxPayload. */
export const BLOB_PART_FLOATS = 2 * 1024 * 1024;

// ---- bulk data, either direction ---------------------------------------------------------------
/**
 * One part of a named Float32Array of a stream: the weights and optimizer state a coordinator
 * loads into a ring (stream `load/<formation>`), the state it fetches back (`state/<formation>/<step>`),
 * a job's inputs and outputs (`job/<id>`).
 */
export const Blob = defineMessage('coord.blob', {
  stream: shortString(256),
  name: shortString(64),
  offset: u32(),
  total: u32(),
  data: float32Array(BLOB_PART_FLOATS),
});

// ---- worker → coordinator ----------------------------------------------------------------------
export const Register = defineMessage('coord.register', {
  name: shortString(128),
  pid: u32(),
  /** the host other workers reach this worker's ring listener at (its port is sent per formation) */
  advertiseHost: host(),
  ringPort: u32(),
});
export const RingReady = defineMessage('coord.ring-ready', { formation: u32(), host: host(), port: u32(), backend: shortString(300), trainCount: u32() });
export const RingUp = defineMessage('coord.ring-up', { formation: u32() });
/** The state sent with `coord.load` is in place on this rank (broadcast from rank 0 over the ring). */
export const Loaded = defineMessage('coord.loaded', { formation: u32() });
export const StepDone = defineMessage('coord.step-done', {
  formation: u32(),
  step: u32(),
  loss: finite(),
  /** null: the step was skipped (mixed precision: the gradients overflowed f16, ml/train/loss-scale.ts) */
  gradNorm: v.nullable(finite()),
  /** forward, backward and the gradients' read-back */
  computeMs: finite(),
  /** of computeMs, the read-back (absent from a worker that does not measure it) */
  readBackMs: v.optional(finite()),
  reduceMs: finite(),
  applyMs: finite(),
  /** collectives' time for this step (its gradient reduction, the previous step's weight all-gather) and the part hidden behind other work */
  commMs: finite(),
  hiddenMs: finite(),
});
/** A ring operation failed on this rank (a peer died or stalled): `failedRank` is the culprit when known. */
export const StepFailed = defineMessage('coord.step-failed', {
  formation: u32(),
  step: u32(),
  code: errorCode(),
  reason: reason(),
  failedRank: v.optional(u32()),
});
export const Calibrated = defineMessage('coord.calibrated', { formation: u32(), seconds: finite() });
export const EvalDone = defineMessage('coord.eval-done', { formation: u32(), step: u32(), loss: v.optional(finite()), accuracy: v.optional(finite()), unigramEntropy: v.optional(finite()), bleu: v.optional(finite()), bleuBeam: v.optional(finite()), examples: v.optional(u32()) });
export const ParamHash = defineMessage('coord.param-hash', { formation: u32(), step: u32(), hash: shortString(64) });
/** The blobs of stream `state/<formation>/<step>` (weights, m, v) were sent. */
export const StateDone = defineMessage('coord.state-done', { formation: u32(), step: u32(), adamT: u32() });
/** A message the worker does not accept now (its type, the worker's state, a stale formation): a protocol bug, named. */
export const WorkerRefused = defineMessage('worker.refused', { code: errorCode(), refused: shortString(64), reason: reason(), formation: v.optional(u32()) });
/** The job's result (its output blobs, if any, were sent before). */
export const JobDone = defineMessage('coord.job-done', { jobId: shortString(200), result: cellResultSchema });
export const JobFailed = defineMessage('coord.job-failed', { jobId: shortString(200), code: v.optional(errorCode()), reason: reason() });

// ---- coordinator → worker ----------------------------------------------------------------------
export const Assign = defineMessage('coord.assign', {
  formation: u32(),
  rank: u32(),
  worldSize: u32(),
  ringId: shortString(128),
  /** the resolved run config */
  config: configJson(),
  task: taskSpecSchema,
});
export const RingConnect = defineMessage('coord.ring-connect', { formation: u32(), host: host(), port: u32() });
/**
 * Load a state: rank 0 received it as the blobs of stream `load/<formation>` (the weights; m and v
 * when `moments`, else they start at zero; with `mask`, a pruning mask as 0/1 floats to hold through
 * training); every rank gets it from rank 0 by a broadcast over the ring, then answers `coord.loaded`.
 */
export const Load = defineMessage('coord.load', { formation: u32(), adamT: u32(), total: u32(), moments: v.boolean(), mask: v.boolean() });
export const Step = defineMessage('coord.step', { formation: u32(), step: u32(), lr: finite(), epoch: u32(), offset: u32() });
/** Seconds budgets: time `count` gradient computations + all-reduces without applying them. */
export const Calibrate = defineMessage('coord.calibrate', { formation: u32(), count: u32(), epoch: u32(), offset: u32() });
/** split: the held-out data to score (ml/tasks/task.ts EvalSplit; absent = dev) */
export const EvalRequest = defineMessage('coord.eval', { formation: u32(), step: u32(), split: v.optional(v.picklist(['dev', 'stop'])) });
export const HashRequest = defineMessage('coord.hash', { formation: u32(), step: u32() });
export const StateRequest = defineMessage('coord.state', { formation: u32(), step: u32() });
/** Leave the ring (it is being re-formed, or its work is done) and wait for a new assignment. */
export const Reset = defineMessage('coord.reset', { formation: u32(), reason: reason(1024) });
/** The coordinator is done with this worker: it exits (`ok` = with status 0). */
export const Stop = defineMessage('coord.stop', { reason: reason(1024), ok: v.boolean() });
/** Run an evaluation job (its input blobs, stream `job/<jobId>`, were sent before). */
export const Job = defineMessage('coord.job', { jobId: shortString(200), job: jobSpecSchema });

// ---- CLI ↔ coordinator -------------------------------------------------------------------------
/** A run id as the server names run directories: the run config's own pattern (no path separators, no leading dot). */
const runId = () => v.pipe(v.string(), v.regex(RUN_ID, `a run id (${RUN_ID_RULE})`));
/** Status of the coordinator; a run server answers for one run when `runId` is given. */
export const StatusRequest = defineMessage('coord.status-request', { runId: v.optional(runId()) });
export const StatusReply = defineMessage('coord.status', { status: statusSchema });
/** Submit a run (one training run) or a sweep to a run server (`ttc serve`); the config is the resolved JSON. */
export const Submit = defineMessage('coord.submit', { kind: v.picklist(['train', 'sweep']), name: runId(), config: v.pipe(v.string(), v.maxLength(4 << 20)) });
export const Submitted = defineMessage('coord.submitted', { runId: runId(), position: u32(), dir: reason(4096) });
/** A submission, cancellation or report request that the coordinator will not carry out, and why. */
export const Refused = defineMessage('coord.refused', { code: errorCode(), reason: reason(8192) });
export const Cancel = defineMessage('coord.cancel', { runId: runId() });
export const Cancelled = defineMessage('coord.cancelled', { runId: runId(), state: v.picklist(['cancelled', 'cancelling']) });
/** Ask for a run's result files (report, tables, plots, summary, metrics; never checkpoints). */
export const ReportRequest = defineMessage('coord.report-request', { runId: runId() });
/** Largest piece of a file per frame. */
export const FILE_PART_BYTES = 1 << 20;
export const FilePart = defineMessage('coord.file', {
  /** path relative to the run directory: "report.html", "plots/isoflop.svg" */
  name: v.pipe(v.string(), v.regex(/^(?!.*\.\.)[A-Za-z0-9_][A-Za-z0-9._-]*(\/[A-Za-z0-9_][A-Za-z0-9._-]*){0,3}$/, 'a relative file name')),
  offset: u32(),
  total: u32(),
  data: bytes({ max: FILE_PART_BYTES }),
});
export const FilesDone = defineMessage('coord.files-done', { runId: runId(), count: u32(), state: shortString(32) });

export const fromWorker = [Register, RingReady, RingUp, Loaded, StepDone, StepFailed, Calibrated, EvalDone, ParamHash, StateDone, WorkerRefused, Blob, JobDone, JobFailed] as const;
export const toWorker = [Assign, RingConnect, Blob, Load, Step, Calibrate, EvalRequest, HashRequest, StateRequest, Reset, Stop, Job] as const;
export const fromCli = [StatusRequest, Submit, Cancel, ReportRequest] as const;
export const toCli = [StatusReply, Submitted, Refused, Cancelled, FilePart, FilesDone] as const;
