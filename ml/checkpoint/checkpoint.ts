/**
 * Checkpoints: one directory per step holding
 *   model.safetensors      weights by parameter name ([in, out] layout, see model/spec.ts)
 *   optimizer.safetensors  AdamW moments as flat arrays (independent of world size)
 *   state.json             step, schedule length, FLOPs/seconds/tokens used, data position, RNG state
 *   config.json            the model dimensions
 *   manifest.json          SHA-256 of every file above; written last
 * The directory is written under a temporary name (step-NNNNNNNN.tmp-PID-TIME), fsynced and
 * renamed, so a crash never leaves a half-written checkpoint under a real name. A failed write (a
 * full disk: TTC_ERR_DISK_FULL) removes its temporary at once; one left by a killed writer is
 * removed when its run starts again (removeStaleTemporaries) or after the next save. Loading
 * verifies every checksum; a corrupt checkpoint is reported and skipped (never deleted), and the
 * previous one is used.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { decodeSafetensors, encodeSafetensors, type SafeTensor } from './safetensors.ts';
import type { ModelDims, ParamLayout } from '../model/spec.ts';
import type { DataPosition } from '../data/batches.ts';
import type { RngState } from '../../core/rng.ts';
import { isTempName, tempPathFor, writeFileSynced, writingTo } from '../../core/fs.ts';
import { codedError } from '../../core/errors.ts';

export const CHECKPOINT_FORMAT = 1;

export interface TrainingState {
  /** Optimizer steps completed. */
  step: number;
  /** Step count the LR schedule is fitted to. */
  totalSteps: number;
  flopsUsed: number;
  secondsUsed: number;
  tokensSeen: number;
  dataPosition: DataPosition;
  rngState: RngState;
  worldSize: number;
}

/** AdamW's state: first and second moments (flat, the model's layout) and the step count. */
export interface OptimizerState {
  m: Float32Array;
  v: Float32Array;
  t: number;
}

export interface Checkpoint {
  dims: ModelDims;
  weights: Float32Array;
  optimizer: OptimizerState;
  state: TrainingState;
}

export const CheckpointError = codedError('CheckpointError', 'TTC_ERR_CHECKPOINT');
export type CheckpointError = InstanceType<typeof CheckpointError>;

const sha256 = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');

export function checkpointsDir(runDir: string): string {
  return path.join(runDir, 'checkpoints');
}

const stepDirName = (step: number) => `step-${String(step).padStart(8, '0')}`;

export function saveCheckpoint(runDir: string, layout: ParamLayout, ckpt: Checkpoint, keep = 3): string {
  const root = checkpointsDir(runDir);
  const finalDir = path.join(root, stepDirName(ckpt.state.step));
  const tmpDir = tempPathFor(finalDir);
  const weights: Record<string, SafeTensor> = {};
  for (const s of layout.specs) weights[s.name] = { dtype: 'F32', shape: s.shape, data: ckpt.weights.subarray(s.offset, s.offset + s.size) };
  const files: Record<string, Uint8Array> = {
    'model.safetensors': encodeSafetensors(weights, { format: 'ttc', layout: 'dense weights [in, out]' }),
    'optimizer.safetensors': encodeSafetensors(
      { 'adamw.m': { dtype: 'F32', shape: [ckpt.optimizer.m.length], data: ckpt.optimizer.m }, 'adamw.v': { dtype: 'F32', shape: [ckpt.optimizer.v.length], data: ckpt.optimizer.v } },
      { t: String(ckpt.optimizer.t) },
    ),
    'state.json': Buffer.from(JSON.stringify(ckpt.state, null, 2)),
    'config.json': Buffer.from(JSON.stringify(ckpt.dims, null, 2)),
  };
  const manifest: Record<string, string> = {};
  for (const [name, bytes] of Object.entries(files)) manifest[name] = sha256(bytes);
  files['manifest.json'] = Buffer.from(JSON.stringify({ format: CHECKPOINT_FORMAT, files: manifest }, null, 2));
  // The whole directory is what must fit: a full disk names its size, and its partial temporary goes.
  const bytes = Object.values(files).reduce((n, b) => n + b.byteLength, 0);
  writingTo(finalDir, bytes, () => {
    fs.mkdirSync(tmpDir, { recursive: true });
    for (const [name, data] of Object.entries(files)) writeFileSynced(path.join(tmpDir, name), data); // manifest.json last
    fs.rmSync(finalDir, { recursive: true, force: true });
    fs.renameSync(tmpDir, finalDir);
  }, () => fs.rmSync(tmpDir, { recursive: true, force: true }));
  pruneCheckpoints(root, keep);
  return finalDir;
}

function pruneCheckpoints(root: string, keep: number): void {
  const dirs = listCheckpointDirs(root);
  for (const d of dirs.slice(0, Math.max(0, dirs.length - keep))) fs.rmSync(d, { recursive: true, force: true });
  removeStaleTemporaries(root);
}

/**
 * Removes the temporaries (`*.tmp-*`) in a run's checkpoints directory and returns their paths.
 * Only the process that owns the run calls this — when the run starts or resumes, and after each of
 * its saves — and only one process trains a run at a time, so no temporary there can belong to a
 * live writer: each is the leftover of a writer that was killed mid-save, never valid.
 */
export function removeStaleTemporaries(root: string): string[] {
  if (!fs.existsSync(root)) return [];
  const stale = fs.readdirSync(root).filter((e) => isTempName(e)).map((e) => path.join(root, e));
  for (const p of stale) fs.rmSync(p, { recursive: true, force: true });
  return stale;
}

/** Checkpoint directories, oldest first. */
export function listCheckpointDirs(root: string): string[] {
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root)
    .filter((e) => /^step-\d{8}$/.test(e))
    .sort()
    .map((e) => path.join(root, e));
}

function readJson(file: string, bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new CheckpointError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

/** The model dimensions a checkpoint was written for (its config.json), before its layout is known. */
export function readCheckpointDims(dir: string): ModelDims {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(path.join(dir, 'config.json'));
  } catch (e) {
    throw new CheckpointError(`${dir} is not a checkpoint: cannot read config.json (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return readJson(`${dir}/config.json`, bytes) as ModelDims;
}

export function loadCheckpoint(dir: string, layout: ParamLayout): Checkpoint {
  const read = (name: string): Buffer => {
    try {
      return fs.readFileSync(path.join(dir, name));
    } catch (e) {
      throw new CheckpointError(`${dir}: cannot read ${name} (${(e as Error).message})`);
    }
  };
  const manifest = readJson(path.join(dir, 'manifest.json'), read('manifest.json')) as { format?: unknown; files?: Record<string, unknown> };
  if (manifest.format !== CHECKPOINT_FORMAT || typeof manifest.files !== 'object' || manifest.files === null) {
    throw new CheckpointError(`${dir}: manifest.json has an unknown format`);
  }
  const files: Record<string, Buffer> = {};
  for (const name of ['model.safetensors', 'optimizer.safetensors', 'state.json', 'config.json']) {
    const bytes = read(name);
    if (manifest.files[name] !== sha256(bytes)) throw new CheckpointError(`${dir}: checksum mismatch for ${name} (file is corrupt or was modified)`);
    files[name] = bytes;
  }
  const model = decodeSafetensors(files['model.safetensors'], `${dir}/model.safetensors`);
  const weights = new Float32Array(layout.total);
  for (const s of layout.specs) {
    const t = model.tensors[s.name];
    if (!t || t.dtype !== 'F32' || t.shape.join(',') !== s.shape.join(',')) {
      throw new CheckpointError(`${dir}: parameter ${s.name} is missing or has another shape than the model [${s.shape}]`);
    }
    weights.set(t.data as Float32Array, s.offset);
  }
  const opt = decodeSafetensors(files['optimizer.safetensors'], `${dir}/optimizer.safetensors`);
  const m = opt.tensors['adamw.m']?.data;
  const v = opt.tensors['adamw.v']?.data;
  if (!(m instanceof Float32Array) || !(v instanceof Float32Array) || m.length !== layout.total || v.length !== layout.total) {
    throw new CheckpointError(`${dir}: optimizer state does not match the model (${layout.total} parameters)`);
  }
  const state = readJson(`${dir}/state.json`, files['state.json']) as TrainingState;
  const dims = readJson(`${dir}/config.json`, files['config.json']) as ModelDims;
  return { dims, weights, optimizer: { m, v, t: Number(opt.metadata.t) }, state };
}

/**
 * The newest checkpoint that loads and verifies; corrupt ones are reported through `warn` and
 * skipped. Returns null when there is none.
 */
export function loadLatestCheckpoint(runDir: string, layout: ParamLayout, warn: (msg: string) => void): Checkpoint | null {
  const dirs = listCheckpointDirs(checkpointsDir(runDir)).reverse();
  for (const dir of dirs) {
    try {
      return loadCheckpoint(dir, layout);
    } catch (e) {
      warn(`skipping checkpoint ${dir}: ${(e as Error).message}`);
    }
  }
  return null;
}
