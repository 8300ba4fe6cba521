/**
 * The live dashboard on a coordinator's port (docs/dashboard.md): the page and its files
 * (coordinator/dashboard/, served from disk, nothing from the network), a JSON API under /api/
 * that the page polls, and the finished reports. Everything here needs the read token of
 * `/metrics` (`httpReadToken`, docs/security.md): as `Authorization: Bearer <token>`, or as the
 * cookie that `GET /dashboard?token=<token>` sets once (HttpOnly, SameSite=Strict) before
 * redirecting to the URL without it. Read-only: GET and HEAD, no CORS, a strict CSP.
 *
 * What it shows is read at each request, as `ttc status` and `/metrics` do: the run server's queue
 * (or a single-run coordinator's run), the live and recently finished trainings' views and
 * per-rank step splits (coordinator/pretrain.ts), and each run directory's metrics.jsonl,
 * summary.json and failures.json, so finished runs show after a restart too.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { MetricsRow } from '../core/run/metrics.ts';
import { runDirFor } from '../core/run/rundir.ts';
import type { Logger } from '../core/run/log.ts';
import type { RunRecord, RunState, TrainingView, WorkerView } from '../protocol/index.ts';
import { proofsEqual } from '../wire/auth.ts';
import { readSummary } from '../ml/loop/pretrain.ts';
import type { RunSummary } from '../ml/train/controller.ts';
import type { TrainingSample } from './metrics.ts';

export interface DashboardSource {
  /** 'server' for a run server's queue of runs and sweeps, 'run' for a coordinator of one run */
  kind: 'server' | 'run';
  /** the runs and sweeps to list; a coordinator of one run lists its trainings instead */
  records?: () => RunRecord[];
  /** the live training and those finished recently, as `/metrics` sees them */
  trainings: () => TrainingSample[];
  workers: () => WorkerView[];
}

/** The page's own files: URL path → file in coordinator/dashboard/ and its type. Nothing else is served from disk. */
const ASSETS: Record<string, { file: string; type: string }> = {
  '/dashboard': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/assets/dashboard.js': { file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
  '/assets/dashboard.css': { file: 'dashboard.css', type: 'text/css; charset=utf-8' },
  '/assets/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};
const ASSET_DIR = new URL('./dashboard/', import.meta.url);

/** The page may load only its own origin's files; no inline script, no framing, no forms. */
const PAGE_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/** A report is self-contained HTML (inline CSS and SVG): it runs sandboxed, in an origin of its own, reaching nothing. */
const REPORT_CSP = "sandbox allow-scripts; default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'";
const COMMON_HEADERS = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'cache-control': 'no-store', 'x-frame-options': 'DENY' };

/** history rows sent per run at most (evaluations are always kept) */
const MAX_HISTORY = 1500;
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

/**
 * The dashboard's address on the coordinator at `coordinator` (ws://host:port, wss://…, http(s)://…
 * or host:port), without a token: the one to print in logs.
 */
export function dashboardUrl(coordinator: string): string {
  const withScheme = /^[a-z]+:\/\//i.test(coordinator) ? coordinator : `http://${coordinator}`;
  const u = new URL(withScheme.replace(/^ws:/i, 'http:').replace(/^wss:/i, 'https:'));
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`not a coordinator address: ${coordinator}`);
  return `${u.protocol}//${u.host}/dashboard`;
}

/** The start-up line of `ttc serve` and `ttc coordinator`: where the dashboard is, and how to get in (never the token itself). */
export function dashboardHint(coordinator: string): string {
  return `dashboard: ${dashboardUrl(coordinator)} — sign in once with ?token=<read token>; \`ttc token --url ${coordinator}\` prints the link (where the secret is)`;
}

/** Paths the dashboard answers (the rest of the port: probes, /metrics, WebSocket). */
export function isDashboardPath(p: string): boolean {
  return p === '/' || p === '/dashboard' || p.startsWith('/api/') || p.startsWith('/assets/') || p.startsWith('/report/');
}

/** The cookie holding the read token: named by the port, since browsers scope cookies by host, not port. */
export function cookieName(req: IncomingMessage): string {
  return `ttc_read_${req.socket.localPort ?? 0}`;
}

export class Dashboard {
  private readonly metricsCache = new Map<string, { ino: number; size: number; rows: MetricsRow[] }>();

  constructor(private readonly o: { readToken: Buffer; source: DashboardSource; log: Logger; secure: boolean }) {}

  /** Whether the request carries the read token: `Authorization: Bearer …` or the dashboard's cookie (constant-time compares). */
  authorized(req: IncomingMessage): boolean {
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (bearer) return this.isToken(bearer[1]!);
    const name = cookieName(req);
    for (const part of (req.headers.cookie ?? '').split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === name) return this.isToken(part.slice(eq + 1).trim());
    }
    return false;
  }

  private isToken(s: string): boolean {
    return proofsEqual(this.o.readToken, Buffer.from(s));
  }

  /** Answers a GET/HEAD of a dashboard path (isDashboardPath). */
  handle(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const p = url.pathname;
    const page = p === '/' || p === '/dashboard';
    const token = url.searchParams.get('token');
    if (page && token !== null) {
      // The link `ttc token --url` prints: trade the token for a cookie, then drop it from the address bar and history.
      if (!this.isToken(token)) return this.unauthorized(res);
      const cookie = `${cookieName(req)}=${token}; HttpOnly; SameSite=Strict; Path=/${this.o.secure ? '; Secure' : ''}`;
      res.writeHead(303, { ...COMMON_HEADERS, location: '/dashboard', 'set-cookie': cookie, 'content-type': 'text/plain' }).end('see /dashboard\n');
      return;
    }
    if (!this.authorized(req)) return this.unauthorized(res);
    try {
      if (p === '/') return void res.writeHead(303, { ...COMMON_HEADERS, location: '/dashboard' }).end();
      const asset = ASSETS[p];
      if (asset) return this.file(res, asset.file, asset.type);
      if (p === '/api/overview') return this.json(res, this.overview());
      const run = /^\/api\/runs\/([^/]+)(?:\/([^/]+))?$/.exec(p);
      if (run) {
        const detail = this.runDetail(decoded(run[1]!), run[2] === undefined ? undefined : decoded(run[2]));
        return detail ? this.json(res, detail) : this.notFound(res, 'no such run on this coordinator');
      }
      const report = /^\/report\/([^/]+)$/.exec(p);
      if (report) return this.report(res, decoded(report[1]!));
      this.notFound(res, 'not found');
    } catch (e) {
      this.o.log.error(`dashboard ${p} failed: ${(e as Error).stack}`);
      res.writeHead(500, { ...COMMON_HEADERS, 'content-type': 'text/plain' }).end('dashboard request failed: see the coordinator log\n');
    }
  }

  private unauthorized(res: ServerResponse): void {
    res
      .writeHead(401, { ...COMMON_HEADERS, 'www-authenticate': 'Bearer realm="ttc"', 'content-type': 'text/plain; charset=utf-8' })
      .end('unauthorized: open /dashboard?token=<read token> once (`ttc token --url <this address>` prints the link; `ttc token` the token), or send Authorization: Bearer <token>\n');
  }

  private notFound(res: ServerResponse, why: string): void {
    res.writeHead(404, { ...COMMON_HEADERS, 'content-type': 'text/plain' }).end(`${why}\n`);
  }

  private file(res: ServerResponse, name: string, type: string): void {
    const body = fs.readFileSync(new URL(name, ASSET_DIR));
    res.writeHead(200, { ...COMMON_HEADERS, 'content-security-policy': PAGE_CSP, 'content-type': type }).end(body);
  }

  private json(res: ServerResponse, value: unknown): void {
    res.writeHead(200, { ...COMMON_HEADERS, 'content-security-policy': PAGE_CSP, 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(value));
  }

  // ---- what the API tells ---------------------------------------------------------------------

  /** The queue (or the one run), the workers and each run's headline numbers. */
  overview(): unknown {
    const src = this.o.source;
    const samples = src.trainings();
    const records = this.records(samples);
    return {
      kind: src.kind,
      now: new Date().toISOString(),
      workers: src.workers().map((w) => ({ name: w.name, rank: w.rank, backend: w.backend, remote: w.remote })),
      runs: records.map((r) => {
        const s = this.sampleOf(r, samples);
        return { ...publicRecord(r), live: s?.view.phase === 'training', ...(s ? headline(s.view) : {}), report: this.hasReport(r) };
      }),
    };
  }

  /** Run records; a coordinator without a queue lists its trainings as runs. */
  private records(samples: TrainingSample[]): RunRecord[] {
    if (this.o.source.records) return this.o.source.records();
    return samples.map((s) => ({ id: s.view.runId, kind: 'train', dir: s.view.runDir, state: stateOfPhase(s.view.phase), submittedAt: '' }));
  }

  /** The training sample of a record: a training run's own, or a sweep's member in training. */
  private sampleOf(r: RunRecord, samples: TrainingSample[]): TrainingSample | undefined {
    if (r.kind === 'train') return samples.find((s) => s.view.runDir === r.dir || s.view.runId === r.id);
    const members = path.join(r.dir, 'members') + path.sep;
    const live = samples.filter((s) => s.view.runDir.startsWith(members));
    return live.find((s) => s.view.phase === 'training') ?? (r.state === 'running' ? live.at(-1) : undefined);
  }

  private hasReport(r: RunRecord): boolean {
    return fs.existsSync(path.join(r.dir, 'report.html'));
  }

  /** One run (or a sweep, or a sweep's member): its live view or summary, loss history, per-rank splits, ring events, failures. */
  runDetail(id: string, member: string | undefined): unknown {
    if (!SAFE_ID.test(id) || (member !== undefined && !SAFE_ID.test(member))) return undefined;
    const samples = this.o.source.trainings();
    const record = this.records(samples).find((r) => r.id === id);
    if (member !== undefined) {
      if (record?.kind !== 'sweep' || !memberIds(record.dir).includes(member)) return undefined;
      const dir = path.join(record.dir, 'members', member);
      const sample = samples.find((s) => s.view.runDir === dir);
      const summary = readSummary(dir);
      return { id: `${id}/${member}`, kind: 'train', sweep: id, state: memberState(summary, sample), ...this.training(dir, sample, summary) };
    }
    if (record?.kind === 'sweep') {
      const members = memberIds(record.dir).map((m) => {
        const dir = path.join(record.dir, 'members', m);
        const s = samples.find((x) => x.view.runDir === dir);
        const sum = readSummary(dir);
        return { id: m, state: memberState(sum, s), step: s?.view.step ?? sum?.steps ?? null, totalSteps: s?.view.totalSteps ?? sum?.totalSteps ?? null, valLoss: s?.view.valLoss ?? sum?.finalValLoss ?? null };
      });
      const live = this.sampleOf(record, samples);
      return { ...publicRecord(record), members, liveMember: live ? path.basename(live.view.runDir) : null, report: this.hasReport(record) ? `/report/${encodeURIComponent(id)}` : null };
    }
    const sample = record ? this.sampleOf(record, samples) : samples.find((s) => s.view.runId === id);
    const dir = record?.dir ?? sample?.view.runDir;
    if (dir === undefined) return undefined;
    const report = record && this.hasReport(record) ? `/report/${encodeURIComponent(id)}` : null;
    return { ...(record ? publicRecord(record) : { id, kind: 'train', state: stateOfPhase(sample!.view.phase) }), ...this.training(dir, sample), report };
  }

  /** `summary`: the run's summary.json when the caller has read it already. */
  private training(dir: string, sample: TrainingSample | undefined, summary = readSummary(dir)): Record<string, unknown> {
    const run = runDirFor(dir);
    const failures = sample?.view.failures ?? (readJson(run.failuresFile) as string[] | undefined) ?? [];
    const rows = this.metricsOf(run.metricsFile);
    const view = sample ? (({ runDir: _, workers: __, ...rest }: TrainingView) => rest)(sample.view) : null;
    return {
      ...(sample ? { state: stateOfPhase(sample.view.phase) } : {}),
      view,
      summary: summary ?? null,
      stepSeconds: sample?.stepSeconds ?? null,
      history: downsample(rows).map((r) => ({ step: r.step, flops: r.flops, seconds: r.seconds, wallSeconds: r.wallSeconds, tokens: r.tokens, trainLoss: r.trainLoss ?? null, valLoss: r.valLoss ?? null, tokensPerSecond: r.tokensPerSecond ?? null })),
      splits: sample?.timeline?.splits ?? [],
      events: sample?.timeline?.events ?? [],
      reformations: sample?.reformations ?? 0,
      failures,
    };
  }

  /**
   * metrics.jsonl's rows. The file only grows while a run trains (one row per step), so what was
   * read is kept and only the bytes appended since are parsed: a poll never re-reads a long run's
   * history on the coordinator's event loop. A file replaced (a resume drops rows past its
   * checkpoint, written atomically: another inode) or shorter is read again whole.
   */
  private metricsOf(file: string): MetricsRow[] {
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch {
      this.metricsCache.delete(file);
      return [];
    }
    let hit = this.metricsCache.get(file);
    if (hit && (hit.ino !== st.ino || st.size < hit.size)) hit = undefined;
    if (!hit) hit = { ino: st.ino, size: 0, rows: [] };
    if (st.size > hit.size) {
      const fd = fs.openSync(file, 'r');
      try {
        const buf = Buffer.alloc(st.size - hit.size);
        const n = fs.readSync(fd, buf, 0, buf.length, hit.size);
        const end = n > 0 ? buf.lastIndexOf(10, n - 1) + 1 : 0; // a row being appended right now waits for the next poll
        for (const line of buf.subarray(0, end).toString('utf8').split('\n')) {
          if (line.trim() === '') continue;
          try {
            hit.rows.push(JSON.parse(line) as MetricsRow);
          } catch {
            // a line cut short by a crash mid-append (readMetrics skips it too)
          }
        }
        hit.size += end;
      } finally {
        fs.closeSync(fd);
      }
    }
    this.metricsCache.delete(file); // re-inserted: the most recently used last
    this.metricsCache.set(file, hit);
    for (const k of this.metricsCache.keys()) if (this.metricsCache.size > 20) this.metricsCache.delete(k);
    return hit.rows;
  }

  /** A finished sweep's (or run's) report.html, sandboxed by its CSP. */
  private report(res: ServerResponse, id: string): void {
    const record = SAFE_ID.test(id) ? this.records(this.o.source.trainings()).find((r) => r.id === id) : undefined;
    const file = record && path.join(record.dir, 'report.html');
    if (!file || !fs.existsSync(file)) return this.notFound(res, 'no report for this run (yet)');
    res.writeHead(200, { ...COMMON_HEADERS, 'x-frame-options': 'SAMEORIGIN', 'content-security-policy': REPORT_CSP, 'content-type': 'text/html; charset=utf-8' }).end(fs.readFileSync(file));
  }
}

/** A path segment decoded; '' for a malformed escape (never a valid id). */
function decoded(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return '';
  }
}

/** A record without its directory (a server path, not needed by the page). */
function publicRecord(r: RunRecord): Omit<RunRecord, 'dir'> {
  const { dir: _, ...rest } = r;
  return rest;
}

function headline(v: TrainingView) {
  return {
    phase: v.phase, step: v.step, totalSteps: v.totalSteps, trainLoss: v.trainLoss, valLoss: v.valLoss, tokensPerSecond: v.tokensPerSecond,
    budgetFraction: v.budgetFraction, etaSeconds: v.etaSeconds, failures: v.failures.length,
  };
}

/** A training's state from its phase (coordinator/pretrain.ts), for coordinators without a queue. */
function stateOfPhase(phase: string): RunState {
  if (phase === 'done') return 'done';
  if (phase.startsWith('failed')) return 'failed';
  if (phase.startsWith('stopped')) return 'cancelled';
  return 'running';
}

/** A sweep member's state: its live phase, else done (summary.json says completed) or stopped (it has a checkpoint to continue from). */
function memberState(summary: RunSummary | undefined, s: TrainingSample | undefined): 'running' | 'done' | 'failed' | 'stopped' {
  if (s && (s.view.phase === 'training' || s.view.phase.startsWith('forming') || s.view.phase.startsWith('waiting'))) return 'running';
  if (summary?.completed) return 'done';
  return s?.view.phase.startsWith('failed') ? 'failed' : 'stopped';
}

/** The members of a sweep directory that have a run directory (members/<id>/config.json). */
function memberIds(sweepDir: string): string[] {
  try {
    return fs
      .readdirSync(path.join(sweepDir, 'members'), { withFileTypes: true })
      .filter((e) => e.isDirectory() && SAFE_ID.test(e.name) && fs.existsSync(runDirFor(path.join(sweepDir, 'members', e.name)).configFile))
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/** At most MAX_HISTORY rows, evenly spaced, keeping every evaluation and the last row. */
function downsample(rows: MetricsRow[]): MetricsRow[] {
  if (rows.length <= MAX_HISTORY) return rows;
  const every = Math.ceil(rows.length / MAX_HISTORY);
  return rows.filter((r, i) => i % every === 0 || r.valLoss !== undefined || i === rows.length - 1);
}
