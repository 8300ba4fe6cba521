/**
 * The run server (`ttc serve`): a long-running coordinator for a cluster. Workers connect once and
 * stay; authenticated CLI clients submit runs (one training run, or a whole sweep with its
 * compression + evaluation step), follow them (`ttc status`), cancel them and fetch their reports.
 * Runs execute one at a time on all connected workers, in submission order. The queue is kept in
 * <outputDir>/queue.json: a restarted server (a rescheduled pod) continues the interrupted run from
 * its checkpoints and then the rest of the queue.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as M from '../protocol/messages.ts';
import { writeJsonAtomic } from '../core/fs.ts';
import { resolveConfig } from '../core/config/load.ts';
import type { Config } from '../core/config/schema.ts';
import { resolveSweepConfig, type SweepConfig } from './sweep-config.ts';
import { createRunDir, openRunDir, runDirFor, timestamp } from '../core/run/rundir.ts';
import { createLogger, type Logger } from '../core/run/log.ts';
import { createProgress } from '../core/run/progress.ts';
import { writeReport } from '../report/write.ts';
import type { Connection, TlsServerFiles } from '../wire/net/index.ts';
import type { SecretInput } from '../wire/auth.ts';
import { WorkerRegistry, type CliMsg, type FromWorker } from './registry.ts';
import { Coordinator } from './coordinator.ts';
import { bestSizePerBudget, pretrainingReportData, readSummary, runSweep, writePretrainingResults, type MemberTrainer } from '../cli/commands/sweep.ts';
import { evaluateSweep } from '../cli/commands/evaluate.ts';
import { resultFiles } from './result-files.ts';

export type RunState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface RunRecord {
  id: string;
  kind: 'train' | 'sweep';
  dir: string;
  state: RunState;
  submittedAt: string;
  startedAt?: string;
  finishedAt?: string;
  /** the failure or cancellation reason */
  error?: string;
  /** what the run is doing now, and how far that stage is */
  stage?: string;
  stageDone?: number;
  stageTotal?: number;
  /** the end result in one line (final validation loss, or the sweep's best sizes) */
  result?: string;
}

export interface RunServerOptions {
  secret: SecretInput;
  host: string;
  port: number;
  tls?: TlsServerFiles;
  /** where run directories and queue.json live (the runs volume in Kubernetes) */
  outputDir: string;
  /**
   * Settings of this cluster forced onto every submitted run (a sweep's base), e.g. the backend
   * its workers have and the cache directory they mount (`ttc serve --set cacheDir=…`).
   */
  overrides?: Record<string, unknown>;
  log: Logger;
}

const QUEUE_FILE = 'queue.json';
/** what the protocol accepts as a run id (coord.submitted, coord.status-request) */
const RUN_ID = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const now = () => new Date().toISOString();

export class RunServer {
  readonly registry: WorkerRegistry;
  private runs: RunRecord[] = [];
  private live: Coordinator | undefined;
  private abort: AbortController | undefined;
  private formations = 0;
  private wake: () => void = () => {};
  private closed = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly opts: RunServerOptions) {
    fs.mkdirSync(opts.outputDir, { recursive: true });
    this.registry = new WorkerRegistry({
      secret: opts.secret,
      host: opts.host,
      port: opts.port,
      tls: opts.tls,
      name: 'ttc-serve',
      log: opts.log,
      status: (id) => this.status(id),
      phase: () => this.phase(),
      cli: (conn, msg) => this.onCli(conn, msg),
    });
    this.runs = this.readQueue();
    for (const r of this.runs) {
      if (r.state === 'running') {
        // The previous server stopped mid-run: it runs again first, from its checkpoints.
        r.state = 'queued';
        r.stage = 'interrupted by a server restart; continues from its last checkpoint';
        opts.log.warn(`run ${r.id} was interrupted by a server restart: it continues from its checkpoints`);
      }
    }
    this.writeQueue();
  }

  /** Listens and starts executing the queue; resolves with the URL. */
  async start(): Promise<string> {
    const url = await this.registry.listen();
    this.loop = this.execute();
    return url;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.abort?.abort('the server is shutting down');
    this.wake();
    await this.registry.close();
    await this.loop?.catch(() => {});
  }

  private phase(): string {
    const r = this.runs.find((x) => x.state === 'running');
    return r ? `running ${r.id}` : 'idle';
  }

  private readQueue(): RunRecord[] {
    const file = path.join(this.opts.outputDir, QUEUE_FILE);
    if (!fs.existsSync(file)) return [];
    try {
      const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as { runs?: RunRecord[] };
      if (!Array.isArray(parsed.runs)) throw new Error('no "runs" list');
      return parsed.runs;
    } catch (e) {
      // Keep the unreadable file for inspection rather than overwrite what it may still say.
      const kept = `${file}.corrupt-${Date.now()}`;
      fs.renameSync(file, kept);
      this.opts.log.error(`${file} is unreadable (${(e as Error).message}): kept as ${kept}, starting with an empty queue`);
      return [];
    }
  }

  private writeQueue(): void {
    const file = path.join(this.opts.outputDir, QUEUE_FILE);
    writeJsonAtomic(file, { runs: this.runs });
  }

  private update(r: RunRecord, fields: Partial<RunRecord>): void {
    Object.assign(r, fields);
    this.writeQueue();
  }

  // ---- submissions ------------------------------------------------------------------------------

  /** Validates a submission and queues it; throws with the reason when it is not acceptable. */
  submit(kind: 'train' | 'sweep', name: string, configJson: string): RunRecord {
    let raw: unknown;
    try {
      raw = JSON.parse(configJson);
    } catch (e) {
      throw new Error(`the config is not JSON: ${(e as Error).message}`);
    }
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('the config must be a JSON object');
    let record: RunRecord;
    if (kind === 'train') {
      // The server decides where results go; everything else is the submitter's config, validated again here.
      const config = resolveConfig(raw, { ...this.opts.overrides, outputDir: this.opts.outputDir });
      if (config.runId && !RUN_ID.test(config.runId)) throw new Error(`runId "${config.runId}": use letters, digits, ".", "_" and "-" (it names a directory on the server)`);
      const run = createRunDir(config, `${name}.json`);
      record = { id: run.id, kind, dir: run.dir, state: 'queued', submittedAt: now() };
    } else {
      const sweep = resolveSweepConfig(raw, `submitted sweep "${name}"`);
      sweep.base = resolveConfig(sweep.base, { ...this.opts.overrides, outputDir: this.opts.outputDir });
      if (sweep.sweepId && !RUN_ID.test(sweep.sweepId)) throw new Error(`sweepId "${sweep.sweepId}": use letters, digits, ".", "_" and "-" (it names a directory on the server)`);
      const id = uniqueId(this.opts.outputDir, sweep.sweepId || `${name}-${timestamp()}`, sweep.sweepId !== '');
      const dir = path.join(this.opts.outputDir, id);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'sweep.json'), `${JSON.stringify({ ...sweep, sweepId: id, outputDir: this.opts.outputDir }, null, 2)}\n`);
      record = { id, kind, dir, state: 'queued', submittedAt: now() };
    }
    this.runs.push(record);
    this.writeQueue();
    this.opts.log.info(`run ${record.id} (${kind}) submitted: ${this.position(record)} ahead of it`);
    this.wake();
    return record;
  }

  private position(r: RunRecord): number {
    return this.runs.filter((x) => (x.state === 'queued' || x.state === 'running') && this.runs.indexOf(x) < this.runs.indexOf(r)).length;
  }

  cancel(id: string): RunRecord {
    const r = this.runs.find((x) => x.id === id);
    if (!r) throw new Error(`no run "${id}" on this server`);
    if (r.state === 'queued') this.update(r, { state: 'cancelled', finishedAt: now(), error: 'cancelled before it started' });
    else if (r.state === 'running') this.abort?.abort('cancelled by `ttc cancel`');
    else throw new Error(`run ${id} is already ${r.state}`);
    this.opts.log.warn(`run ${id}: cancellation requested (${r.state})`);
    return r;
  }

  // ---- execution --------------------------------------------------------------------------------

  private async execute(): Promise<void> {
    while (!this.closed) {
      const next = this.runs.find((r) => r.state === 'queued');
      if (!next) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        continue;
      }
      this.abort = new AbortController();
      this.update(next, { state: 'running', startedAt: next.startedAt ?? now(), error: undefined });
      const log = createLogger(next.id, path.join(next.dir, next.kind === 'train' ? 'train.log' : 'sweep.log'));
      try {
        const result = next.kind === 'train' ? await this.runTraining(next, log) : await this.runSweepRecord(next, log);
        this.update(next, { state: 'done', finishedAt: now(), stage: undefined, stageDone: undefined, stageTotal: undefined, result });
        this.opts.log.info(`run ${next.id}: done — ${result}`);
      } catch (e) {
        if (this.closed) {
          // Shutting down: the run stays "running" in queue.json and resumes when the server is back.
          this.opts.log.warn(`run ${next.id} interrupted by the shutdown; it continues when the server restarts`);
          return;
        }
        const cancelled = this.abort.signal.aborted;
        this.update(next, { state: cancelled ? 'cancelled' : 'failed', finishedAt: now(), error: (e as Error).message });
        this.opts.log.error(`run ${next.id} ${cancelled ? 'cancelled' : 'failed'}: ${(e as Error).message}`);
      } finally {
        this.live = undefined;
      }
    }
  }

  private coordinator(config: Config, dir: string, log: Logger): Coordinator {
    const c = new Coordinator({
      config,
      run: runDirFor(dir),
      secret: this.opts.secret,
      host: this.opts.host,
      port: this.opts.port,
      log,
      progress: createProgress(path.basename(dir)),
      registry: this.registry,
      nextFormation: () => ++this.formations,
      signal: this.abort!.signal,
    });
    this.live = c;
    return c;
  }

  private async runTraining(r: RunRecord, log: Logger): Promise<string> {
    const { storedConfig } = openRunDir(r.dir);
    const config = resolveConfig(storedConfig);
    this.update(r, { stage: 'training' });
    const summary = await this.coordinator(config, r.dir, log).run();
    return `final validation loss ${summary.finalValLoss.toFixed(4)} after ${summary.steps} steps (${summary.flopsUsed.toExponential(3)} FLOPs, ${summary.secondsUsed.toFixed(1)} s)`;
  }

  private async runSweepRecord(r: RunRecord, log: Logger): Promise<string> {
    const stored = path.join(r.dir, 'sweep.json');
    const sweep: SweepConfig = resolveSweepConfig(JSON.parse(fs.readFileSync(stored, 'utf8')), stored);
    const signal = this.abort!.signal;
    const train: MemberTrainer = async ({ config, runDir, resume, label, index, total }) => {
      if (signal.aborted) throw new Error(`cancelled before ${label}`);
      this.update(r, { stage: `pretraining ${label}`, stageDone: index - 1, stageTotal: total });
      const runConfig = resume ? resolveConfig(openRunDir(runDir).storedConfig) : config;
      if (!resume) createRunDir(config);
      await this.coordinator(runConfig, runDir, log).run();
      this.live = undefined;
    };
    const results = await runSweep(sweep, r.dir, (l) => log.info(l), train);
    writePretrainingResults(r.dir, sweep, results);
    this.update(r, { stage: 'pretraining done', stageDone: results.length, stageTotal: results.length });
    const data = pretrainingReportData(r.id, sweep, results);
    if (sweep.evaluation) {
      if (signal.aborted) throw new Error('cancelled before the compression + evaluation step');
      const { cells, failures } = await evaluateSweep(r.dir, sweep, this.registry, log, (stage, done, total) => {
        if (r.stage !== stage || r.stageDone !== done) this.update(r, { stage, stageDone: done, stageTotal: total });
      });
      data.cells = cells;
      if (failures.length > 0) throw new Error(`${failures.length} evaluation job(s) failed: ${failures.join('; ')}`);
    }
    const report = writeReport(r.dir, data);
    const best = [...bestSizePerBudget(results)].map(([b, m]) => `budget ${b}: ${m.sizeId} (val ${m.valLoss.toFixed(4)})`);
    return [`${results.length} members`, ...best, ...report.conclusion.slice(0, 1)].join('; ');
  }

  // ---- CLI requests -----------------------------------------------------------------------------

  private onCli(conn: Connection<FromWorker>, msg: CliMsg): void {
    const refuse = (e: unknown) => conn.send(M.Refused, { reason: (e as Error).message.slice(0, 8000) });
    switch (msg.t) {
      case 'coord.status-request':
        if (msg.runId && !this.runs.some((r) => r.id === msg.runId)) return refuse(new Error(`no run "${msg.runId}" on this server`));
        return conn.send(M.StatusReply, { status: JSON.stringify(this.status(msg.runId)) });
      case 'coord.submit':
        try {
          const r = this.submit(msg.kind, msg.name, msg.config);
          conn.send(M.Submitted, { runId: r.id, position: this.position(r), dir: r.dir });
        } catch (e) {
          this.opts.log.warn(`submission "${msg.name}" refused: ${(e as Error).message}`);
          refuse(e);
        }
        return;
      case 'coord.cancel':
        try {
          const r = this.cancel(msg.runId);
          conn.send(M.Cancelled, { runId: r.id, state: r.state === 'running' ? 'cancelling' : r.state });
        } catch (e) {
          refuse(e);
        }
        return;
      case 'coord.report-request':
        void this.sendFiles(conn, msg.runId).catch(refuse);
        return;
    }
  }

  private async sendFiles(conn: Connection<FromWorker>, id: string): Promise<void> {
    const r = this.runs.find((x) => x.id === id);
    if (!r) throw new Error(`no run "${id}" on this server`);
    const files = resultFiles(r.dir);
    if (files.length === 0) throw new Error(`run ${id} (${r.state}) has no result files yet`);
    for (const name of files) {
      const data = fs.readFileSync(path.join(r.dir, name));
      for (let off = 0; off === 0 || off < data.length; off += M.FILE_PART_BYTES) {
        const part = data.subarray(off, Math.min(data.length, off + M.FILE_PART_BYTES));
        // Wait for each part to reach the socket: bounded memory for large reports.
        await new Promise<void>((resolve, reject) => conn.send(M.FilePart, { name, offset: off, total: data.length, data: part }, (err) => (err ? reject(err) : resolve())));
        if (data.length === 0) break;
      }
    }
    conn.send(M.FilesDone, { runId: id, count: files.length, state: r.state });
  }

  status(id?: string): Record<string, unknown> {
    const runs = this.runs.map((r) => ({ ...r, position: r.state === 'queued' ? this.position(r) : undefined }));
    const current = this.runs.find((r) => r.state === 'running');
    const live = current && this.live ? this.live.status() : undefined;
    return {
      server: true,
      phase: this.phase(),
      outputDir: this.opts.outputDir,
      overrides: this.opts.overrides ?? {},
      workers: [...this.registry.workers.values()].map((w) => ({ name: w.name, rank: w.rank ?? null, remote: w.conn.remote, backend: w.backend ?? null })),
      runs: id ? runs.filter((r) => r.id === id) : runs,
      current: current ? { id: current.id, training: live } : null,
      summary: id ? readRunSummary(this.runs.find((r) => r.id === id)) : undefined,
    };
  }
}

function readRunSummary(r: RunRecord | undefined): unknown {
  if (!r || r.kind !== 'train') return undefined;
  return readSummary(r.dir);
}

/** A directory name under `dir` that is not taken yet; an explicit id that is taken is an error. */
function uniqueId(dir: string, base: string, explicit: boolean): string {
  if (!fs.existsSync(path.join(dir, base))) return base;
  if (explicit) throw new Error(`a run directory named ${base} already exists on the server: choose another sweepId`);
  for (let i = 2; ; i++) if (!fs.existsSync(path.join(dir, `${base}-${i}`))) return `${base}-${i}`;
}
