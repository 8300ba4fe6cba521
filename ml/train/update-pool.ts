/**
 * Worker threads for the optimizer update (ml/train/update-task.ts), one pool per process
 * and size, created on first use. The threads are unref'd while idle, so that a process whose
 * work is done exits without having to find and close the pool; they are ref'd while a job runs
 * (else a process waiting only on them could exit mid-update).
 */
import fs from 'node:fs';
import os from 'node:os';
import type { Worker } from 'node:worker_threads';

import { StaticPool } from 'node-worker-threads-pool';

import { updateTask, type UpdateJob } from './update-task.ts';

/** Auto mode uses threads only for models at least this big: below it one thread takes < ~5 ms. */
export const AUTO_THREADS_MIN_PARAMS = 1_000_000;
/** Auto mode's most threads (memory bandwidth, not cores, limits this loop beyond ~8). */
export const AUTO_THREADS_MAX = 8;

/**
 * optimizer.threads (0 = auto) → the threads one model's update uses. Auto: up to 8, no more than
 * the cores this process may run on, nor than its cgroup CPU limit (a Kubernetes pod's
 * resources.limits.cpu, which os.availableParallelism() does not see).
 */
export function resolveUpdateThreads(requested: number, params: number, cpuLimit = cgroupCpuLimit()): number {
  if (requested > 0) return Math.floor(requested);
  if (params < AUTO_THREADS_MIN_PARAMS) return 1;
  return Math.max(1, Math.min(AUTO_THREADS_MAX, os.availableParallelism(), Math.ceil(cpuLimit ?? Infinity)));
}

/** CPUs allowed by a cgroup v2 `cpu.max` file's text ("max 100000" = no limit → undefined; "400000 100000" → 4). */
export function parseCpuMax(text: string): number | undefined {
  const [quota, period] = text.trim().split(/\s+/);
  const q = Number(quota);
  const p = Number(period);
  if (quota === 'max' || !(q > 0) || !(p > 0)) return undefined;
  return q / p;
}

/** This process's cgroup v2 CPU limit, or undefined (none, cgroup v1, not Linux). */
function cgroupCpuLimit(): number | undefined {
  try {
    return parseCpuMax(fs.readFileSync('/sys/fs/cgroup/cpu.max', 'utf8'));
  } catch {
    return undefined;
  }
}

type Pool = StaticPool<typeof updateTask>;
const pools = new Map<number, Pool>();

const workersOf = (pool: Pool) => (pool as unknown as { workers: Worker[] }).workers;

function poolOf(size: number): Pool {
  let pool = pools.get(size);
  if (!pool) {
    pool = new StaticPool({ size, task: updateTask });
    pools.set(size, pool);
  }
  return pool;
}

let running = 0;

/** Runs the jobs on a pool of `size` threads; resolves when all are done. */
export async function runUpdateJobs(size: number, jobs: UpdateJob[]): Promise<void> {
  const pool = poolOf(size);
  running++;
  for (const w of workersOf(pool)) w.ref();
  try {
    await Promise.all(jobs.map((j) => pool.exec(j)));
  } finally {
    if (--running === 0) for (const p of pools.values()) for (const w of workersOf(p)) w.unref();
  }
}

/** Terminates every pool (tests; a process normally just exits, the idle threads are unref'd). */
export async function closeUpdatePools(): Promise<void> {
  const all = [...pools.values()];
  pools.clear();
  await Promise.all(all.map((p) => p.destroy()));
}
