/**
 * The whole distributed system on this machine, for `ttc local` and `ttc sweep`: the coordinator
 * runs in this process (a WorkerRegistry on a loopback port and the distributed driver) and N
 * `ttc worker` processes are started once and connect to it — this process knows its own address,
 * so nothing is read back from a child's output. The workers' output is passed through (or, line
 * by line, to the caller's `output`: `ttc sweep`'s progress view files it), and each
 * stops by itself when this process dies, even by SIGKILL (they watch their stdin pipe,
 * core/run/parent-watch.ts).
 */
import crypto from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Config } from '../core/config/schema.ts';
import type { Logger } from '../core/run/log.ts';
import { childOfThisProcess } from '../core/run/parent-watch.ts';
import type { Status } from '../protocol/index.ts';
import { Driver } from './formation.ts';
import type { TrainingSample } from './metrics.ts';
import { WorkerRegistry } from './registry.ts';

const TTC = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'ttc.mjs');

export interface LocalClusterOptions {
  workers: number;
  /** this coordinator's name in the handshake (the run or sweep id) */
  name: string;
  log: Logger;
  /** what `ttc status` shows while it runs */
  status: () => Status;
  /** what `/metrics` reports (coordinator/metrics.ts) */
  trainings?: () => TrainingSample[];
  /** each line a worker writes, instead of passing it through to this process's stdout/stderr */
  output?: (worker: string, line: string, stream: 'stdout' | 'stderr') => void;
}

/**
 * Settings a run gets on a local cluster: the first ring waits for all N workers, the run goes on
 * with at most N after a failure, and unless the config sets `threads` the machine's cores are
 * shared out among the workers.
 */
export function localRunOverrides(config: Pick<Config, 'dist' | 'threads'>, workers: number): Record<string, unknown> {
  return {
    dist: { initialWorkers: workers, ...(config.dist.minWorkers > workers ? { minWorkers: workers } : {}) },
    ...(config.threads === 0 ? { threads: Math.max(1, Math.floor(os.availableParallelism() / workers)) } : {}),
  };
}

export class LocalCluster {
  private constructor(
    readonly driver: Driver,
    readonly url: string,
    private readonly children: ChildProcess[],
  ) {}

  /** Listens on 127.0.0.1 (a free port) and starts the workers; they register as they come up. */
  static async start(o: LocalClusterOptions): Promise<LocalCluster> {
    // The cluster's own secret: TTC_SECRET when set (so `ttc status` can reach it), else a fresh random one.
    const secret = process.env.TTC_SECRET ?? crypto.randomBytes(24).toString('base64');
    const registry = new WorkerRegistry({ secret, host: '127.0.0.1', port: 0, name: o.name, log: o.log, status: o.status, trainings: o.trainings });
    const url = await registry.listen();
    const env: NodeJS.ProcessEnv = { ...process.env, TTC_SECRET: secret };
    delete env.TTC_SECRET_FILE;
    const children: ChildProcess[] = [];
    for (let i = 0; i < o.workers; i++) {
      const w = spawn(process.execPath, [TTC, 'worker', '--coordinator', url, '--name', `worker-${i}`], childOfThisProcess(env, 'pipe'));
      children.push(w);
      for (const [from, to, stream] of [[w.stdout!, process.stdout, 'stdout'], [w.stderr!, process.stderr, 'stderr']] as const) {
        const output = o.output;
        readline.createInterface({ input: from }).on('line', output ? (line) => output(`worker-${i}`, line, stream) : (line) => to.write(`${line}\n`));
      }
      w.on('exit', (code, signal) => {
        if (code !== 0) o.log.warn(`worker-${i} exited (${signal ?? `code ${code}`})`);
      });
    }
    return new LocalCluster(new Driver(registry, o.log), url, children);
  }

  get registry(): WorkerRegistry {
    return this.driver.registry;
  }

  /** Tells the workers to exit, waits for them (at most `graceMs`, then kills the rest), stops listening. */
  async stop(ok: boolean, reason: string, graceMs = 5000): Promise<void> {
    this.registry.stopAll(ok, reason);
    const running = this.children.filter((c) => c.exitCode === null && c.signalCode === null);
    await Promise.race([Promise.all(running.map((c) => new Promise((r) => c.once('exit', r)))), new Promise((r) => setTimeout(r, graceMs).unref())]);
    this.kill('SIGTERM');
    await this.registry.close();
  }

  /** Ends the workers at once (this process is going away). */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill(signal);
  }
}
