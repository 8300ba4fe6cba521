/**
 * The CLI of a running coordinator: `ttc run` (submit a run or sweep to a run server), `ttc status`
 * (a coordinator's state, or one run's progress, optionally followed to its end), `ttc report`
 * (fetch a run's result files) and `ttc cancel`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { loadConfig, readConfigFile } from '../../core/config/load.ts';
import { loadSweepConfig } from '../../coordinator/sweep-config.ts';
import type { Message } from '../../wire/protocol/index.ts';
import * as M from '../../protocol/messages.ts';
import { overridesFromSets } from '../args.ts';
import { UsageError } from '../../core/errors.ts';
import { CliSession, RefusedError, type CliReply } from '../client.ts';
import { formatEta } from '../../core/run/progress.ts';
import type { RunRecord } from '../../coordinator/server.ts';

const env = process.env;
const coordinatorOption = { coordinator: { type: 'string' as const, default: env.TTC_COORDINATOR } };

export const runUsage = `ttc run --coordinator URL --config <file.json> [--set key=value ...] [--name N] [--detach] [--report-dir DIR]

Submits a training run (a run config) or a sweep (a sweep config: sizes/grid + budgets, with its
compression + evaluation step) to a run server (\`ttc serve\`) and follows its progress to the end.
The config is validated here first, then again by the server. URL: ws://, wss://, http(s):// or
host:port (env TTC_COORDINATOR); e.g. after \`kubectl -n ttc port-forward svc/ttc-coordinator 7070\`,
--coordinator http://127.0.0.1:7070.
  --name N          run name (default: the config file's name); the run id is N-<timestamp>
  --detach          submit and return (follow later with \`ttc status --run ID --follow\`)
  --report-dir DIR  when the run is done, fetch its results into DIR (as \`ttc report\`)
Exit status: 0 when the run completes, 1 when it fails or is cancelled.
Secret: TTC_SECRET or TTC_SECRET_FILE (the cluster's shared secret).`;

export const statusUsage = `ttc status --coordinator URL [--run ID] [--follow] [--json]

Prints the coordinator's state: its workers and runs (a run server), or the run's step, budget,
loss and throughput (a single-run coordinator). --run ID shows one run of a run server; --follow
shows its progress until it ends (exit 0 when it completes). Secret: TTC_SECRET or TTC_SECRET_FILE.`;

export const reportUsage = `ttc report --coordinator URL --run ID [--out DIR]

Fetches a run's result files from a run server into DIR (default reports/<ID>): report.html,
report.md, results.csv, plots/*.svg, summaries, metrics and logs (no checkpoints).`;

export const cancelUsage = `ttc cancel --coordinator URL --run ID

Cancels a queued run, or stops a running one at its next step (its checkpoints stay on the server).`;

function requireCoordinator(url: string | undefined, usage: string): string {
  if (!url) throw new UsageError(`--coordinator (or TTC_COORDINATOR) is required\n\n${usage}`);
  return url;
}

/** A config file is a sweep when it has the sweep's own fields. */
function isSweepConfig(raw: unknown): boolean {
  return typeof raw === 'object' && raw !== null && ('sizes' in raw || 'grid' in raw || 'budgets' in raw);
}

function runName(file: string): string {
  const base = path.basename(file, '.json').replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[.-]+/, '');
  return base.slice(0, 100) || 'run';
}

export async function runCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...coordinatorOption,
      config: { type: 'string' },
      set: { type: 'string', multiple: true },
      name: { type: 'string' },
      detach: { type: 'boolean' },
      'report-dir': { type: 'string' },
      interval: { type: 'string', default: '2' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(runUsage);
    return 0;
  }
  const url = requireCoordinator(values.coordinator, runUsage);
  if (!values.config) throw new UsageError(`--config is required\n\n${runUsage}`);
  // Refuse a bad config here, before anything reaches the cluster.
  const raw = readConfigFile(values.config);
  const sweep = isSweepConfig(raw);
  if (sweep && values.set?.length) throw new Error('--set applies to run configs; edit the sweep file (its "base" section) instead');
  const resolved = sweep ? loadSweepConfig(values.config) : loadConfig(values.config, overridesFromSets(values.set ?? []));
  const name = values.name ?? runName(values.config);
  let session = await CliSession.open(url, 'run');
  try {
    const reply = await session.request(
      () => session.connection.send(M.Submit, { kind: sweep ? 'sweep' : 'train', name, config: JSON.stringify(resolved) }),
      (m): m is Message<typeof M.Submitted> => m.t === 'coord.submitted',
    );
    console.log(`submitted ${sweep ? 'sweep' : 'run'} ${reply.runId} (${reply.position === 0 ? 'starts now' : `${reply.position} run(s) ahead of it`}); results on the server in ${reply.dir}`);
    console.log(`TTC_RUN_ID=${reply.runId}`);
    if (values.detach) {
      console.log(`follow it with: ttc status --coordinator ${url} --run ${reply.runId} --follow`);
      return 0;
    }
    const followed = await follow(url, session, reply.runId, Number(values.interval) * 1000);
    session = followed.session;
    if (followed.state === 'done' && values['report-dir']) await fetchReport(session, reply.runId, values['report-dir']);
    return followed.state === 'done' ? 0 : 1;
  } finally {
    session.close();
  }
}

type RunView = RunRecord & { position?: number };

interface TrainingView {
  step: number;
  totalSteps: number;
  budgetFraction: number;
  trainLoss: number;
  valLoss: number;
  tokensPerSecond: number;
  etaSeconds: number | null;
}

const num = (x: unknown, d = 4) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(d) : '-');

/** One line for where a run is: its stage, and the live training step when it is training. */
function describeRun(r: RunView, training: TrainingView | undefined): string {
  const parts = [`${r.id}: ${r.state}${r.position !== undefined ? ` (${r.position} ahead)` : ''}`];
  if (r.stage) parts.push(`${r.stage}${r.stageTotal ? ` [${r.stageDone ?? 0}/${r.stageTotal}]` : ''}`);
  if (training && r.state === 'running') {
    const budget = Number.isFinite(training.budgetFraction) ? ` (${(100 * Math.min(1, training.budgetFraction)).toFixed(1)}% of budget)` : '';
    parts.push(`step ${training.step}/${training.totalSteps}${budget}, loss ${num(training.trainLoss)}, val ${num(training.valLoss)}, ${num(training.tokensPerSecond, 0)} tok/s, ETA ${formatEta(training.etaSeconds ?? undefined)}`);
  }
  if (r.result) parts.push(r.result);
  if (r.error) parts.push(r.error);
  return parts.join(' — ');
}

/** How long `follow` keeps trying to reach a coordinator it lost (a rescheduled pod takes minutes). */
const RECONNECT_MS = 600_000;

/**
 * Polls one run until it ends; a progress bar on a terminal, a line per change otherwise. Survives
 * a restart of the run server (reconnects). Ctrl-C stops following, not the run. Returns the final
 * state and the session in use.
 */
async function follow(url: string, first: CliSession, runId: string, intervalMs: number): Promise<{ state: string; session: CliSession }> {
  const onSigint = () => {
    process.stderr.write(`\nstopped following; run ${runId} goes on on the server.\n  follow: ttc status --coordinator ${url} --run ${runId} --follow\n  cancel: ttc cancel --coordinator ${url} --run ${runId}\n`);
    process.exit(130);
  };
  process.once('SIGINT', onSigint);
  try {
    return await followLoop(url, first, runId, intervalMs);
  } finally {
    process.off('SIGINT', onSigint);
  }
}

async function followLoop(url: string, first: CliSession, runId: string, intervalMs: number): Promise<{ state: string; session: CliSession }> {
  let session = first;
  const tty = process.stderr.isTTY === true;
  const bar = tty ? new cliProgress.SingleBar({ format: `${runId} |{bar}| {percentage}% {what}`, hideCursor: true, stream: process.stderr }, cliProgress.Presets.shades_classic) : undefined;
  let started = false;
  let lastLine = '';
  let lastAt = 0;
  for (;;) {
    let s: Record<string, unknown>;
    try {
      s = await session.status(runId);
    } catch (e) {
      if (e instanceof RefusedError) throw e;
      if (started) bar?.stop();
      started = false;
      process.stderr.write(`lost the coordinator (${(e as Error).message}); reconnecting for up to ${RECONNECT_MS / 60_000} minutes — the run goes on there\n`);
      session.close();
      session = await CliSession.open(url, 'follow', RECONNECT_MS);
      process.stderr.write('reconnected\n');
      continue;
    }
    const r = (s.runs as RunView[])[0];
    const cur = s.current as { id: string; training?: TrainingView } | null;
    const training = cur?.id === runId ? cur.training : undefined;
    const line = describeRun(r, training);
    if (bar) {
      const [done, total] = training && r.state === 'running' ? [training.step, training.totalSteps] : [r.stageDone ?? 0, r.stageTotal ?? 1];
      if (!started) bar.start(Math.max(1, total), done, { what: '' });
      started = true;
      bar.setTotal(Math.max(1, total));
      bar.update(done, { what: line.slice(runId.length + 2, runId.length + 180) });
    } else if (line !== lastLine && (Date.now() - lastAt > 10_000 || stageOf(line) !== stageOf(lastLine) || r.state !== 'running')) {
      process.stderr.write(`${line}\n`);
      lastLine = line;
      lastAt = Date.now();
    }
    if (r.state === 'done' || r.state === 'failed' || r.state === 'cancelled') {
      bar?.stop();
      console.log(`run ${runId} ${r.state}${r.result ? `: ${r.result}` : ''}${r.error ? `: ${r.error}` : ''}`);
      return { state: r.state, session };
    }
    await new Promise((res) => setTimeout(res, intervalMs));
  }
}

const stageOf = (line: string) => line.split(' — ').slice(0, 2).join(' — ');

async function fetchReport(session: CliSession, runId: string, outDir: string): Promise<string[]> {
  const root = path.resolve(outDir);
  fs.mkdirSync(root, { recursive: true });
  const open = new Map<string, { buf: Buffer; got: number }>();
  const written: string[] = [];
  const onPart = (m: CliReply) => {
    if (m.t !== 'coord.file') return;
    const target = path.resolve(root, m.name);
    // The schema already forbids ".." and absolute names; check again where the bytes would land.
    if (!target.startsWith(root + path.sep)) throw new Error(`the coordinator sent a file outside the report folder: ${m.name}`);
    let f = open.get(m.name);
    if (!f) open.set(m.name, (f = { buf: Buffer.alloc(m.total), got: 0 }));
    if (m.total !== f.buf.length || m.offset + m.data.length > m.total) throw new Error(`inconsistent parts of ${m.name}`);
    f.buf.set(m.data, m.offset);
    f.got += m.data.length;
    if (f.got === m.total) {
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.writeFileSync(target, f.buf);
      written.push(m.name);
      open.delete(m.name);
    }
  };
  const done = await session.request(() => session.connection.send(M.ReportRequest, { runId }), (m): m is Message<typeof M.FilesDone> => m.t === 'coord.files-done', 60_000, onPart);
  if (written.length !== done.count || open.size > 0) throw new Error(`received ${written.length} of ${done.count} files (incomplete: ${[...open.keys()].join(', ') || 'none'})`);
  console.log(`${written.length} file(s) of run ${runId} (${done.state}) in ${outDir}${written.includes('report.html') ? `; open ${path.join(outDir, 'report.html')}` : ''}`);
  return written;
}

/** A command about one run of a run server: parses --coordinator and --run (+ `extra` options), opens a session, runs `body`. */
async function withRun<E extends Record<string, { type: 'string' }>>(
  argv: string[],
  usage: string,
  purpose: string,
  extra: E,
  body: (session: CliSession, runId: string, values: { [K in keyof E]?: string }) => Promise<void>,
): Promise<number> {
  const values = parseArgs({ args: argv, options: { ...coordinatorOption, run: { type: 'string' }, help: { type: 'boolean', short: 'h' }, ...extra } }).values as Record<string, string | boolean | undefined>;
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const url = requireCoordinator(values.coordinator as string | undefined, usage);
  const runId = values.run as string | undefined;
  if (!runId) throw new UsageError(`--run is required\n\n${usage}`);
  const session = await CliSession.open(url, purpose);
  try {
    await body(session, runId, values as { [K in keyof E]?: string });
    return 0;
  } finally {
    session.close();
  }
}

export function reportCommand(argv: string[]): Promise<number> {
  return withRun(argv, reportUsage, 'report', { out: { type: 'string' } }, async (session, runId, values) => {
    await fetchReport(session, runId, values.out ?? path.join('reports', runId));
  });
}

export function cancelCommand(argv: string[]): Promise<number> {
  return withRun(argv, cancelUsage, 'cancel', {}, async (session, runId) => {
    const r = await session.request(() => session.connection.send(M.Cancel, { runId }), (m): m is Message<typeof M.Cancelled> => m.t === 'coord.cancelled');
    console.log(r.state === 'cancelling' ? `run ${r.runId}: stopping at its next step (its checkpoints stay on the server)` : `run ${r.runId}: ${r.state}`);
  });
}

export async function statusCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { ...coordinatorOption, run: { type: 'string' }, follow: { type: 'boolean' }, json: { type: 'boolean' }, interval: { type: 'string', default: '2' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(statusUsage);
    return 0;
  }
  const url = requireCoordinator(values.coordinator, statusUsage);
  let session = await CliSession.open(url, 'status');
  try {
    const reply = await session.status(values.run);
    if (values.follow) {
      if (!reply.server) throw new Error('--follow needs a run server (ttc serve); a single-run coordinator prints its own progress');
      const runs = reply.runs as RunView[];
      const id = values.run ?? (reply.current as { id: string } | null)?.id ?? runs.at(-1)?.id;
      if (!id) throw new Error('the server has no runs to follow');
      const followed = await follow(url, session, id, Number(values.interval) * 1000);
      session = followed.session;
      return followed.state === 'done' ? 0 : 1;
    }
    if (values.json) console.log(JSON.stringify(reply, null, 2));
    else console.log(reply.server ? describeServer(reply) : describeSingleRun(reply));
    return 0;
  } finally {
    session.close();
  }
}

function describeWorkers(workers: Array<{ name: string; rank: number | null; remote: string; backend: string | null }>): string[] {
  return [`workers (${workers.length}):`, ...workers.map((w) => `  ${w.rank == null ? 'idle  ' : `rank ${w.rank}`}  ${w.name}  ${w.remote}  ${w.backend ?? ''}`)];
}

function describeServer(reply: Record<string, unknown>): string {
  const runs = reply.runs as RunView[];
  const cur = reply.current as { id: string; training?: TrainingView } | null;
  return [
    `run server: ${reply.phase}; runs in ${reply.outputDir}`,
    ...describeWorkers(reply.workers as never),
    `runs (${runs.length}):`,
    ...runs.map((r) => `  ${describeRun(r, cur?.id === r.id ? cur.training : undefined)}`),
  ].join('\n');
}

function describeSingleRun(reply: Record<string, unknown>): string {
  // The evaluation step's coordinator (ttc evaluate) has no training step to show.
  if (typeof reply.step !== 'number') return [`run ${reply.runId}: ${reply.phase}`, ...describeWorkers(reply.workers as never)].join('\n');
  return [
    `run ${reply.runId} (${reply.runDir}): ${reply.phase}`,
    `step ${reply.step}/${reply.totalSteps}, ${(100 * (reply.budgetFraction as number)).toFixed(1)}% of the budget, ${(reply.flopsUsed as number).toExponential(3)} FLOPs, ${num(reply.secondsUsed, 1)} s`,
    `loss ${num(reply.trainLoss)}, validation ${num(reply.valLoss)}, ${num(reply.tokensPerSecond, 0)} tokens/s, last checkpoint at step ${reply.lastCheckpointStep}`,
    ...describeWorkers(reply.workers as never),
    ...((reply.failures as string[]).length ? ['failures:', ...(reply.failures as string[]).map((f) => `  ${f}`)] : []),
  ].join('\n');
}
