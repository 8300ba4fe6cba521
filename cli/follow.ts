/**
 * Following a run of a run server to its end (`ttc run`, `ttc status --follow`): a progress bar on
 * a terminal, a line per change elsewhere; it survives a restart of the server (reconnects).
 */
import cliProgress from 'cli-progress';
import { formatEta } from '../core/run/progress.ts';
import type { RunRecord, ServerStatus, Status, TrainingView, WorkerView } from '../protocol/index.ts';
import { CliSession, RefusedError } from './client.ts';
import { INTERRUPTED_EXIT } from './interrupt.ts';

type RunView = ServerStatus['runs'][number];

const num = (x: number | null | undefined, d = 4) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(d) : '-');

/** One line for where a run is: its stage, and the live training step when it is training. */
export function describeRun(r: RunView, training: TrainingView | undefined): string {
  const parts = [`${r.id}: ${r.state}${r.position !== undefined ? ` (${r.position} ahead)` : ''}`];
  if (r.stage) parts.push(`${r.stage}${r.stageTotal ? ` [${r.stageDone ?? 0}/${r.stageTotal}]` : ''}`);
  if (training && r.state === 'running') {
    const budget = training.budgetFraction !== null ? ` (${(100 * Math.min(1, training.budgetFraction)).toFixed(1)}% of budget)` : '';
    parts.push(`step ${training.step}/${training.totalSteps}${budget}, loss ${num(training.trainLoss)}, val ${num(training.valLoss)}, ${num(training.tokensPerSecond, 0)} tok/s, ETA ${formatEta(training.etaSeconds ?? undefined)}`);
  }
  if (r.result) parts.push(r.result);
  if (r.error) parts.push(r.error);
  return parts.join(' — ');
}

export function describeWorkers(workers: WorkerView[]): string[] {
  return [`workers (${workers.length}):`, ...workers.map((w) => `  ${w.rank == null ? 'idle  ' : `rank ${w.rank}`}  ${w.name}  ${w.remote}  ${w.backend ?? ''}`)];
}

/** A coordinator's status in a few lines. */
export function describeStatus(s: Status): string {
  if (s.kind === 'server') {
    return [
      `run server: ${s.phase}; runs in ${s.outputDir}`,
      ...describeWorkers(s.workers),
      `runs (${s.runs.length}):`,
      ...s.runs.map((r) => `  ${describeRun(r, s.current?.id === r.id ? s.current.training : undefined)}`),
    ].join('\n');
  }
  if (s.kind === 'evaluation') return [`run ${s.runId}: ${s.phase}`, ...describeWorkers(s.workers)].join('\n');
  return [
    `run ${s.runId} (${s.runDir}): ${s.phase}`,
    `step ${s.step}/${s.totalSteps}, ${s.budgetFraction !== null ? (100 * s.budgetFraction).toFixed(1) : '-'}% of the budget, ${s.flopsUsed.toExponential(3)} FLOPs, ${num(s.secondsUsed, 1)} s`,
    `loss ${num(s.trainLoss)}, validation ${num(s.valLoss)}, ${num(s.tokensPerSecond, 0)} tokens/s, last checkpoint at step ${s.lastCheckpointStep}`,
    ...describeWorkers(s.workers),
    ...(s.failures.length ? ['failures:', ...s.failures.map((f) => `  ${f}`)] : []),
  ].join('\n');
}

/** How long `follow` keeps trying to reach a coordinator it lost (a rescheduled pod takes minutes). */
const RECONNECT_MS = 600_000;
const ENDED: ReadonlySet<RunRecord['state']> = new Set(['done', 'failed', 'cancelled']);

/**
 * Polls one run until it ends. Ctrl-C stops following, not the run. Returns the final state and
 * the session in use (a new one after a reconnection).
 */
export async function follow(url: string, first: CliSession, runId: string, intervalMs: number): Promise<{ state: RunRecord['state']; session: CliSession }> {
  const onSigint = () => {
    process.stderr.write(`\nstopped following; run ${runId} goes on on the server.\n  follow: ttc status --coordinator ${url} --run ${runId} --follow\n  cancel: ttc cancel --coordinator ${url} --run ${runId}\n`);
    process.exit(INTERRUPTED_EXIT);
  };
  process.once('SIGINT', onSigint);
  try {
    return await followLoop(url, first, runId, intervalMs);
  } finally {
    process.off('SIGINT', onSigint);
  }
}

const stageOf = (line: string) => line.split(' — ').slice(0, 2).join(' — ');

async function followLoop(url: string, first: CliSession, runId: string, intervalMs: number): Promise<{ state: RunRecord['state']; session: CliSession }> {
  let session = first;
  const tty = process.stderr.isTTY === true;
  const bar = tty ? new cliProgress.SingleBar({ format: `${runId} |{bar}| {percentage}% {what}`, hideCursor: true, stream: process.stderr }, cliProgress.Presets.shades_classic) : undefined;
  let started = false;
  let lastLine = '';
  let lastAt = 0;
  for (;;) {
    let s: Status;
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
    if (s.kind !== 'server') throw new RefusedError('TTC_ERR_REFUSED', 'following a run needs a run server (ttc serve); a single-run coordinator prints its own progress');
    const r = s.runs[0]!;
    const training = s.current?.id === runId ? s.current.training : undefined;
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
    if (ENDED.has(r.state)) {
      bar?.stop();
      console.log(`run ${runId} ${r.state}${r.result ? `: ${r.result}` : ''}${r.error ? `: ${r.error}` : ''}`);
      return { state: r.state, session };
    }
    await new Promise((res) => setTimeout(res, intervalMs));
  }
}
