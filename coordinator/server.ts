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
import * as v from 'valibot';
import { resolveConfig } from '../core/config/load.ts';
import { RunDirError, TtcError, isTtcError } from '../core/errors.ts';
import { writeJsonAtomic } from '../core/fs.ts';
import { createLogger, type Logger } from '../core/run/log.ts';
import { createProgress } from '../core/run/progress.ts';
import { createRunDir, openRunDir, runDirFor, timestamp } from '../core/run/rundir.ts';
import { checkRunFits } from '../ml/loop/memory-check.ts';
import { readSummary } from '../ml/loop/pretrain.ts';
import { M, runRecordSchema, type RunRecord, type ServerStatus } from '../protocol/index.ts';
import type { SecretInput } from '../wire/auth.ts';
import type { Connection, TlsServerFiles } from '../wire/net/index.ts';
import { Driver } from './formation.ts';
import { PretrainRun } from './pretrain.ts';
import type { TrainingSample } from './metrics.ts';
import { WorkerRegistry, type CliMsg, type FromWorker } from './registry.ts';
import { resultFiles } from './result-files.ts';
import { checkSweepFits, resolveSweepConfig, type SweepConfig } from './sweep-config.ts';
import { runSweep } from './sweep.ts';

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
const KEEP_FINISHED = 50;
const now = () => new Date().toISOString();
/** queue.json */
const queueSchema = v.strictObject({ runs: v.array(runRecordSchema) });

/** A submission, cancellation or report request this server will not carry out (the reason goes back to the CLI). */
class Refusal extends TtcError {
  override name = 'Refusal';
  constructor(message: string) {
    super('TTC_ERR_REFUSED', message);
  }
}

export class RunServer {
  readonly registry: WorkerRegistry;
  private readonly driver: Driver;
  private runs: RunRecord[] = [];
  private live: PretrainRun | undefined;
  /** the last `/metrics` sample of each training run finished since this server started (the most recent {@link KEEP_FINISHED}) */
  private readonly finished = new Map<string, TrainingSample>();
  private abort: AbortController | undefined;
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
      cli: (conn, msg) => this.onCli(conn, msg),
      trainings: () => this.trainings(),
      runStates: () => this.runs.map((r) => r.state),
      runRecords: () => this.runs,
    });
    this.driver = new Driver(this.registry, opts.log);
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
      const parsed = v.safeParse(queueSchema, JSON.parse(fs.readFileSync(file, 'utf8')));
      if (!parsed.success) throw new Error(`${parsed.issues[0].message} at ${v.getDotPath(parsed.issues[0]) ?? 'the top level'}`);
      return parsed.output.runs;
    } catch (e) {
      // Keep the unreadable file for inspection rather than overwrite what it may still say.
      const kept = `${file}.corrupt-${Date.now()}`;
      fs.renameSync(file, kept);
      this.opts.log.error(`${file} is unreadable (${(e as Error).message}): kept as ${kept}, starting with an empty queue`);
      return [];
    }
  }

  private writeQueue(): void {
    writeJsonAtomic(path.join(this.opts.outputDir, QUEUE_FILE), { runs: this.runs });
  }

  private update(r: RunRecord, fields: Partial<RunRecord>): void {
    Object.assign(r, fields);
    for (const k of Object.keys(fields) as Array<keyof RunRecord>) if (fields[k] === undefined) delete r[k];
    this.writeQueue();
  }

  // ---- submissions ------------------------------------------------------------------------------

  /** Validates a submission and queues it; throws with the reason when it is not acceptable. */
  submit(kind: 'train' | 'sweep', name: string, configJson: string): RunRecord {
    let raw: unknown;
    try {
      raw = JSON.parse(configJson);
    } catch (e) {
      throw new Refusal(`the config is not JSON: ${(e as Error).message}`);
    }
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Refusal('the config must be a JSON object');
    let record: RunRecord;
    if (kind === 'train') {
      // The server decides where results go; everything else is the submitter's config, validated again here.
      const config = resolveConfig(raw, { ...this.opts.overrides, outputDir: this.opts.outputDir });
      // what this server holds of the run (its restart point); each worker checks its step when it joins
      checkRunFits(config, { workers: 0, coordinator: true });
      const run = createRunDir(config, `${name}.json`);
      record = { id: run.id, kind, dir: run.dir, state: 'queued', submittedAt: now() };
    } else {
      const sweep = resolveSweepConfig(raw, `submitted sweep "${name}"`);
      sweep.base = resolveConfig(sweep.base, { ...this.opts.overrides, outputDir: this.opts.outputDir });
      checkSweepFits(sweep, { workers: 0, coordinator: true });
      const id = uniqueId(this.opts.outputDir, sweep.sweepId || `${name}-${timestamp()}`, sweep.sweepId !== '');
      const dir = path.join(this.opts.outputDir, id);
      fs.mkdirSync(dir, { recursive: true });
      writeJsonAtomic(path.join(dir, 'sweep.json'), { ...sweep, sweepId: id, outputDir: this.opts.outputDir });
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
    if (!r) throw new Refusal(`no run "${id}" on this server`);
    if (r.state === 'queued') this.update(r, { state: 'cancelled', finishedAt: now(), error: 'cancelled before it started' });
    else if (r.state === 'running') this.abort?.abort('cancelled by `ttc cancel`');
    else throw new Refusal(`run ${id} is already ${r.state}`);
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
        this.opts.log.error(`run ${next.id} ${cancelled ? 'cancelled' : 'failed'}: ${isTtcError(e) ? e.message : (e as Error).stack}`);
      } finally {
        this.setLive(undefined);
      }
    }
  }

  /** The run now training (a sweep's member, one after the other); the one it replaces keeps its final sample for `/metrics`. */
  private setLive(run: PretrainRun | undefined): void {
    if (this.live) {
      const last = this.live.sample();
      this.finished.delete(last.view.runId); // re-inserted: the newest last
      this.finished.set(last.view.runId, last);
      for (const id of this.finished.keys()) if (this.finished.size > KEEP_FINISHED) this.finished.delete(id);
    }
    this.live = run;
  }

  /** What `/metrics` reports: the finished runs' last samples and the live run's (a resumed run only once). */
  private trainings(): TrainingSample[] {
    const live = this.live?.sample();
    const done = [...this.finished.values()].filter((s) => s.view.runId !== live?.view.runId);
    return live ? [...done, live] : done;
  }

  private async runTraining(r: RunRecord, log: Logger): Promise<string> {
    const config = resolveConfig(openRunDir(r.dir).storedConfig);
    this.update(r, { stage: 'training' });
    this.setLive(new PretrainRun({ config, run: runDirFor(r.dir), driver: this.driver, log, progress: createProgress(path.basename(r.dir)), signal: this.abort!.signal }));
    const summary = await this.live!.run();
    return `final validation loss ${summary.finalValLoss.toFixed(4)} after ${summary.steps} steps (${summary.flopsUsed.toExponential(3)} FLOPs, ${summary.secondsUsed.toFixed(1)} s)`;
  }

  private async runSweepRecord(r: RunRecord, log: Logger): Promise<string> {
    const stored = path.join(r.dir, 'sweep.json');
    const sweep: SweepConfig = resolveSweepConfig(JSON.parse(fs.readFileSync(stored, 'utf8')), stored);
    const out = await runSweep(sweep, r.dir, {
      driver: this.driver,
      log,
      signal: this.abort!.signal,
      onMember: (m) => this.setLive(m),
      progress: (stage, done, total) => {
        if (r.stage !== stage || r.stageDone !== done) this.update(r, { stage, stageDone: done, stageTotal: total });
      },
    });
    if (out.failures.length > 0) throw new TtcError('TTC_ERR_JOB', `${out.failures.length} evaluation job(s) failed: ${out.failures.join('; ')}`);
    return [`${out.members.length} members`, ...out.best, ...out.conclusion.slice(0, 1)].join('; ');
  }

  // ---- CLI requests -----------------------------------------------------------------------------

  private onCli(conn: Connection<FromWorker>, msg: CliMsg): void {
    const refuse = (e: unknown) => {
      if (!isTtcError(e)) this.opts.log.error(`request ${msg.t} failed: ${(e as Error).stack}`);
      conn.send(M.Refused, { code: isTtcError(e) ? e.code : 'TTC_ERR_REFUSED', reason: (e as Error).message.slice(0, 8000) });
    };
    switch (msg.t) {
      case 'coord.status-request':
        if (msg.runId && !this.runs.some((r) => r.id === msg.runId)) return refuse(new Refusal(`no run "${msg.runId}" on this server`));
        return conn.send(M.StatusReply, { status: this.status(msg.runId) });
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
          conn.send(M.Cancelled, { runId: r.id, state: r.state === 'running' ? 'cancelling' : 'cancelled' });
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
    if (!r) throw new Refusal(`no run "${id}" on this server`);
    const files = resultFiles(r.dir);
    if (files.length === 0) throw new Refusal(`run ${id} (${r.state}) has no result files yet`);
    for (const name of files) {
      const data = fs.readFileSync(path.join(r.dir, name));
      for (let off = 0; off === 0 || off < data.length; off += M.FILE_PART_BYTES) {
        // Awaited per part: bounded memory for large reports.
        await conn.sendAsync(M.FilePart, { name, offset: off, total: data.length, data: data.subarray(off, Math.min(data.length, off + M.FILE_PART_BYTES)) });
        if (data.length === 0) break;
      }
    }
    conn.send(M.FilesDone, { runId: id, count: files.length, state: r.state });
  }

  status(id?: string): ServerStatus {
    const runs = this.runs.map((r) => ({ ...r, ...(r.state === 'queued' ? { position: this.position(r) } : {}) }));
    const current = this.runs.find((r) => r.state === 'running');
    const workers = this.registry.workerViews();
    const record = id ? this.runs.find((r) => r.id === id) : undefined;
    const summary = record?.kind === 'train' ? readSummary(record.dir) : undefined;
    return {
      kind: 'server',
      phase: this.phase(),
      outputDir: this.opts.outputDir,
      overrides: this.opts.overrides ?? {},
      workers,
      runs: id ? runs.filter((r) => r.id === id) : runs,
      current: current ? { id: current.id, ...(this.live ? { training: this.live.status(workers) } : {}) } : null,
      ...(summary ? { summary: JSON.parse(JSON.stringify(summary)) } : {}),
    };
  }
}

/** A directory name under `dir` that is not taken yet; an explicit id that is taken is an error. */
function uniqueId(dir: string, base: string, explicit: boolean): string {
  if (!fs.existsSync(path.join(dir, base))) return base;
  if (explicit) throw new RunDirError(`a run directory named ${base} already exists on the server: choose another sweepId`);
  for (let i = 2; ; i++) if (!fs.existsSync(path.join(dir, `${base}-${i}`))) return `${base}-${i}`;
}
