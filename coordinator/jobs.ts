/**
 * Runs independent evaluation jobs on the connected workers: one job per worker at a time, its
 * inputs sent as a blob stream, its typed result gathered. A job whose worker disconnects or stalls
 * is re-queued and runs elsewhere (the worker is dropped); a job that fails on a worker is retried
 * on another up to `maxAttempts` times, then reported as failed with every reason.
 */
import type { Logger } from '../core/run/log.ts';
import { M, sendBlobs, type Blobs, type CellResultWire, type JobSpec } from '../protocol/index.ts';
import type { WorkerEntry, WorkerRegistry } from './registry.ts';

export interface JobRequest {
  id: string;
  job: JobSpec;
  inputs: Blobs;
}

export interface JobOutcome {
  id: string;
  ok: boolean;
  result?: CellResultWire;
  worker?: string;
  errors: string[];
}

export interface JobRunOptions {
  timeoutMs: number;
  maxAttempts: number;
  minWorkers: number;
  waitForWorkersSeconds: number;
  /** called as each job finishes (to persist results as they come: a killed step loses nothing done) */
  onOutcome?: (o: JobOutcome) => void;
  /** no new job starts once aborted; the running ones are waited for */
  signal?: AbortSignal;
}

export async function runJobs(reg: WorkerRegistry, jobs: JobRequest[], opts: JobRunOptions, log: Logger): Promise<JobOutcome[]> {
  const pending = [...jobs];
  const attempts = new Map<string, string[]>();
  const outcomes = new Map<string, JobOutcome>();
  const busy = new Map<WorkerEntry, { job: JobRequest; timer: NodeJS.Timeout }>();
  let wake: () => void = () => {};

  const finish = (o: JobOutcome) => {
    outcomes.set(o.id, o);
    opts.onOutcome?.(o);
    log.info(`job ${o.id}: ${o.ok ? 'done' : 'FAILED'}${o.worker ? ` on ${o.worker}` : ''} (${outcomes.size}/${jobs.length})`);
  };
  const retry = (job: JobRequest, why: string) => {
    const errs = attempts.get(job.id) ?? [];
    errs.push(why);
    attempts.set(job.id, errs);
    if (errs.length >= opts.maxAttempts) finish({ id: job.id, ok: false, errors: errs });
    else {
      log.warn(`job ${job.id} re-queued (attempt ${errs.length + 1}): ${why}`);
      pending.unshift(job);
    }
  };
  const release = (w: WorkerEntry) => {
    const b = busy.get(w);
    if (b) clearTimeout(b.timer);
    busy.delete(w);
    wake();
  };

  const offFrame = reg.onFrame((w, msg) => {
    const b = busy.get(w);
    if (!b) return;
    if (msg.t === 'coord.job-done' && msg.jobId === b.job.id) {
      release(w);
      finish({ id: b.job.id, ok: true, result: msg.result, worker: w.name, errors: attempts.get(b.job.id) ?? [] });
    } else if (msg.t === 'coord.job-failed' && msg.jobId === b.job.id) {
      release(w);
      retry(b.job, `${reg.who(w)}: ${msg.reason}${msg.code ? ` (${msg.code})` : ''}`);
    } else if (msg.t === 'worker.refused') {
      release(w);
      retry(b.job, `${reg.who(w)} refused ${msg.refused}: ${msg.reason} (${msg.code})`);
    }
  });
  const offClose = reg.onWorkerClose((w, why) => {
    const b = busy.get(w);
    if (!b) return;
    release(w);
    retry(b.job, `${reg.who(w)} disconnected while running it (${why})`);
  });

  try {
    while (outcomes.size < jobs.length) {
      if (opts.signal?.aborted && busy.size === 0) break;
      const idle = [...reg.workers.values()].filter((w) => !busy.has(w));
      if (pending.length > 0 && idle.length > 0 && !opts.signal?.aborted) {
        const job = pending.shift()!;
        const w = idle[0]!;
        const timer = setTimeout(() => {
          log.error(`job ${job.id}: no result from ${reg.who(w)} within ${opts.timeoutMs / 1000} s: dropping it as stalled`);
          release(w);
          reg.drop(w, 'job timed out');
          retry(job, `${reg.who(w)} stalled`);
        }, opts.timeoutMs);
        busy.set(w, { job, timer });
        void sendBlobs(w.conn, `job/${job.id}`, job.inputs)
          .then(() => w.conn.send(M.Job, { jobId: job.id, job: job.job }))
          .catch(() => {}); // a send failure shows up as the worker's close
        continue;
      }
      if (pending.length > 0 && busy.size === 0 && reg.size < opts.minWorkers) await reg.waitFor(opts.minWorkers, opts.waitForWorkersSeconds, opts.signal);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 500);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  } finally {
    offFrame();
    offClose();
    for (const b of busy.values()) clearTimeout(b.timer);
  }
  return jobs.flatMap((j) => outcomes.get(j.id) ?? []);
}
