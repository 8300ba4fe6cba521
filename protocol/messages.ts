/**
 * Coordinator ↔ worker (and CLI) messages of a training run. Frames carry a `formation` number:
 * each ring formation gets a new one, and anything tagged with an old formation is ignored, so a
 * message delayed past a re-formation cannot confuse the new ring. Configs and run state travel
 * as JSON text and are validated again (convict schema) after parsing; tensors travel as binary.
 */
import * as v from 'valibot';
import { bytes, defineMessage, float32Array, shortString, u32 } from '../wire/protocol/registry.ts';

const json = (max = 1 << 20) => v.pipe(v.string(), v.maxLength(max));
const finite = () => v.pipe(v.number(), v.finite());
const host = () => shortString(255);
/** Largest tensor part per frame: 2 Mi floats = 8 MiB, well under maxPayload. */
export const STATE_PART_FLOATS = 2 * 1024 * 1024;
const stateKind = () => v.picklist(['weights', 'm', 'v']);
/** what a coordinator may load into a ring: the state, plus a pruning mask (1 = keep, as floats) to hold through training */
const loadKind = () => v.picklist(['weights', 'm', 'v', 'mask']);

// ---- worker → coordinator ----------------------------------------------------------------------
export const Register = defineMessage('coord.register', {
  name: shortString(128),
  pid: u32(),
  /** host:port other workers reach this worker's ring listener at is sent later, per formation */
  advertiseHost: host(),
  ringPort: u32(),
});
export const RingReady = defineMessage('coord.ring-ready', { formation: u32(), host: host(), port: u32(), backend: shortString(300), trainSequences: u32() });
export const RingUp = defineMessage('coord.ring-up', { formation: u32() });
export const StepDone = defineMessage('coord.step-done', {
  formation: u32(),
  step: u32(),
  loss: finite(),
  gradNorm: finite(),
  computeMs: finite(),
  reduceMs: finite(),
  applyMs: finite(),
});
export const StepFailed = defineMessage('coord.step-failed', {
  formation: u32(),
  step: u32(),
  reason: v.pipe(v.string(), v.maxLength(2048)),
  failedRank: v.optional(u32()),
});
export const Calibrated = defineMessage('coord.calibrated', { formation: u32(), seconds: finite() });
export const EvalDone = defineMessage('coord.eval-done', { formation: u32(), step: u32(), loss: finite(), unigramEntropy: v.optional(finite()), accuracy: v.optional(finite()) });
export const ParamHash = defineMessage('coord.param-hash', { formation: u32(), step: u32(), hash: shortString(64) });
export const StatePart = defineMessage('coord.state-part', {
  formation: u32(),
  step: u32(),
  kind: stateKind(),
  offset: u32(),
  data: float32Array(STATE_PART_FLOATS),
});
export const StateDone = defineMessage('coord.state-done', { formation: u32(), step: u32(), adamT: u32() });

// ---- coordinator → worker ----------------------------------------------------------------------
export const Assign = defineMessage('coord.assign', {
  formation: u32(),
  rank: u32(),
  worldSize: u32(),
  ringId: shortString(128),
  /** the resolved run config, JSON */
  config: json(),
  /** what the ring trains: MLM pretraining (default) or classification fine-tuning (spec JSON) */
  task: v.optional(v.picklist(['mlm', 'classify'])),
  taskSpec: v.optional(json()),
});
export const RingConnect = defineMessage('coord.ring-connect', { formation: u32(), host: host(), port: u32() });
export const LoadPart = defineMessage('coord.load-part', { formation: u32(), kind: loadKind(), offset: u32(), data: float32Array(STATE_PART_FLOATS) });
export const LoadDone = defineMessage('coord.load-done', { formation: u32(), adamT: u32(), total: u32() });
export const Step = defineMessage('coord.step', {
  formation: u32(),
  step: u32(),
  lr: finite(),
  epoch: u32(),
  offset: u32(),
});
/** Seconds budgets: time `count` gradient computations + all-reduces without applying them. */
export const Calibrate = defineMessage('coord.calibrate', { formation: u32(), count: u32(), epoch: u32(), offset: u32() });
export const EvalRequest = defineMessage('coord.eval', { formation: u32(), step: u32() });
export const HashRequest = defineMessage('coord.hash', { formation: u32(), step: u32() });
export const StateRequest = defineMessage('coord.state', { formation: u32(), step: u32() });
/** Leave the current ring (it is being re-formed) and wait for a new assignment. */
export const Reset = defineMessage('coord.reset', { formation: u32(), reason: v.pipe(v.string(), v.maxLength(1024)) });
/** The run is over (or failed): the worker exits. */
export const Stop = defineMessage('coord.stop', { reason: v.pipe(v.string(), v.maxLength(1024)), ok: v.boolean() });

// ---- jobs (compression + evaluation step): either direction ----------------------------------------
/** A named float32 input (coordinator → worker) or output (worker → coordinator) of a job, in parts. */
export const JobBlob = defineMessage('coord.job-blob', { jobId: shortString(200), name: shortString(64), offset: u32(), total: u32(), data: float32Array(STATE_PART_FLOATS) });
/** coordinator → worker: run a job (its blobs were sent before). */
export const Job = defineMessage('coord.job', { jobId: shortString(200), kind: shortString(64), spec: json() });
/** worker → coordinator: the job's result (its output blobs were sent before). */
export const JobDone = defineMessage('coord.job-done', { jobId: shortString(200), result: json() });
export const JobFailed = defineMessage('coord.job-failed', { jobId: shortString(200), reason: v.pipe(v.string(), v.maxLength(2048)) });

// ---- CLI ↔ coordinator ---------------------------------------------------------------------------
/** A run id as the server names run directories: no path separators, no leading dot. */
const runId = () => v.pipe(v.string(), v.regex(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/, 'a run id (letters, digits, . _ -)'));
/** Status of the coordinator; a run server answers for one run when `runId` is given. */
export const StatusRequest = defineMessage('coord.status-request', { runId: v.optional(runId()) });
export const StatusReply = defineMessage('coord.status', { status: json() });
/** Submit a run (one training run) or a sweep to a run server (`ttc serve`); the config is the resolved JSON. */
export const Submit = defineMessage('coord.submit', { kind: v.picklist(['train', 'sweep']), name: runId(), config: json(4 << 20) });
export const Submitted = defineMessage('coord.submitted', { runId: runId(), position: u32(), dir: v.pipe(v.string(), v.maxLength(4096)) });
/** A submission, cancellation or report request that the coordinator will not carry out, and why. */
export const Refused = defineMessage('coord.refused', { reason: v.pipe(v.string(), v.maxLength(8192)) });
export const Cancel = defineMessage('coord.cancel', { runId: runId() });
export const Cancelled = defineMessage('coord.cancelled', { runId: runId(), state: shortString(32) });
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

export const fromWorker = [Register, RingReady, RingUp, StepDone, StepFailed, Calibrated, EvalDone, ParamHash, StatePart, StateDone, JobBlob, JobDone, JobFailed] as const;
export const toWorker = [Assign, RingConnect, LoadPart, LoadDone, Step, Calibrate, EvalRequest, HashRequest, StateRequest, Reset, Stop, JobBlob, Job] as const;
export const fromCli = [StatusRequest, Submit, Cancel, ReportRequest] as const;
export const toCli = [StatusReply, Submitted, Refused, Cancelled, FilePart, FilesDone] as const;
