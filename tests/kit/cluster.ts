/**
 * Parent side of tests/kit/collective-worker.ts: spawn worker processes on 127.0.0.1 and drive
 * them over IPC, every wait bounded by a timeout. Wait limits are what a quiet machine needs;
 * each is multiplied by the load scale (tests/kit/time-scale.mjs).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { WorkerCommand, WorkerEvent } from './collective-worker.ts';
import { scaled } from './time-scale.mjs';

// TTC_BENCH_WORKER: a bundled collective-worker.mjs (bench/allreduce-device.sh), run without tsx
const WORKER = process.env.TTC_BENCH_WORKER ?? fileURLToPath(new URL('./collective-worker.ts', import.meta.url));
const TSX = WORKER.endsWith('.ts') ? ['--import', 'tsx'] : [];

export class WorkerProc {
  readonly logs: string[] = [];
  readonly events: WorkerEvent[] = [];
  private waiters: { pred: (e: WorkerEvent) => boolean; resolve: (e: WorkerEvent) => void }[] = [];
  exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** the port this rank listens on (set by startGroup) */
  port = 0;
  private readonly exitWaiters: (() => void)[] = [];

  constructor(readonly child: ChildProcess, readonly name: string) {
    child.on('message', (e: WorkerEvent) => {
      if (e.ev === 'log') { this.logs.push(e.line); return; }
      const i = this.waiters.findIndex((w) => w.pred(e));
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(e);
      else this.events.push(e);
    });
    child.on('error', (err) => this.logs.push(`child process error: ${err.message}`));
    child.on('exit', (code, signal) => {
      this.exited = { code, signal };
      for (const w of this.exitWaiters.splice(0)) w();
    });
  }

  send(cmd: WorkerCommand): void {
    if (this.child.connected) this.child.send(cmd);
  }

  /** Wait for the next event matching `pred` (or an `error` event), bounded by `timeoutMs` × the load scale. */
  next<E extends WorkerEvent['ev']>(ev: E, timeoutMs: number): Promise<Extract<WorkerEvent, { ev: E }>> {
    const limit = scaled(timeoutMs);
    const pred = (e: WorkerEvent) => e.ev === ev || e.ev === 'error';
    const i = this.events.findIndex(pred);
    const settle = (e: WorkerEvent) => {
      if (e.ev === 'error' && ev !== 'error') {
        const err = new Error(`${this.name}: ${e.message}`) as Error & { event: WorkerEvent };
        err.event = e;
        throw err;
      }
      return e as Extract<WorkerEvent, { ev: E }>;
    };
    if (i >= 0) return Promise.resolve(this.events.splice(i, 1)[0]!).then(settle);
    return new Promise<WorkerEvent>((resolve, reject) => {
      const w = { pred, resolve: (e: WorkerEvent) => { clearTimeout(timer); resolve(e); } };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`${this.name}: no "${ev}" within ${limit} ms${this.exited ? ` (exited ${this.exited.code ?? this.exited.signal})` : ''}`));
      }, limit);
      timer.unref(); // a wait nobody needs any more must not keep the process alive
      this.waiters.push(w);
    }).then(settle);
  }

  async request<E extends WorkerEvent['ev']>(cmd: WorkerCommand, ev: E, timeoutMs: number): Promise<Extract<WorkerEvent, { ev: E }>> {
    const p = this.next(ev, timeoutMs);
    this.send(cmd);
    return p;
  }

  /** Whether the process exited within timeoutMs × the load scale. */
  waitExit(timeoutMs: number): Promise<boolean> {
    if (this.exited) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), scaled(timeoutMs));
      timer.unref();
      this.exitWaiters.push(() => { clearTimeout(timer); resolve(true); });
    });
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (!this.exited) this.child.kill(signal);
  }
}

export function spawnWorker(name: string, env: Record<string, string | undefined> = {}): WorkerProc {
  const child = fork(WORKER, [], {
    // TTC_WORKER_NODE_ARGS: extra node flags for the workers, e.g. "--cpu-prof --cpu-prof-dir=prof"
    execArgv: [...TSX, ...(process.env.TTC_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean)],
    serialization: 'advanced',
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new WorkerProc(child, name);
}

export interface GroupOptions {
  kind: 'ring' | 'star';
  worldSize: number;
  secret: string;
  segmentBytes?: number;
  timeoutMs?: number;
  joinTimeoutMs?: number;
  connectTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  startTimeoutMs?: number;
  /** ring only: false turns the per-frame MAC off (to measure its cost) */
  frameMac?: boolean;
}

/** Spawn, open and connect `worldSize` ranks; returns the worker handles (index = rank). */
export async function startGroup(o: GroupOptions): Promise<WorkerProc[]> {
  const procs = Array.from({ length: o.worldSize }, (_, r) => spawnWorker(`${o.kind} rank ${r}`, { TTC_SECRET: o.secret, TTC_SECRET_FILE: undefined }));
  const t = o.startTimeoutMs ?? 30_000;
  try {
    const opened = await Promise.all(procs.map((p, rank) => p.request({
      cmd: 'open', kind: o.kind, rank, worldSize: o.worldSize,
      ...(o.segmentBytes ? { segmentBytes: o.segmentBytes } : {}), ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}),
      ...(o.joinTimeoutMs ? { joinTimeoutMs: o.joinTimeoutMs } : {}), ...(o.connectTimeoutMs ? { connectTimeoutMs: o.connectTimeoutMs } : {}),
      ...(o.handshakeTimeoutMs ? { handshakeTimeoutMs: o.handshakeTimeoutMs } : {}), ...(o.frameMac === false ? { frameMac: false } : {}),
    }, 'opened', t)));
    opened.forEach((e, i) => { procs[i]!.port = e.port; });
    await Promise.all(procs.map((p, rank) => {
      const target = o.kind === 'ring' ? opened[(rank + 1) % o.worldSize]! : opened[0]!;
      return p.request({ cmd: 'connect', host: '127.0.0.1', port: target.port }, 'connected', t);
    }));
    return procs;
  } catch (err) {
    for (const p of procs) p.kill();
    throw err;
  }
}

export async function stopGroup(procs: WorkerProc[], timeoutMs = 5000): Promise<void> {
  for (const p of procs) if (!p.exited) p.send({ cmd: 'close' });
  await Promise.all(procs.map(async (p) => { if (!(await p.waitExit(timeoutMs))) p.kill(); }));
}
