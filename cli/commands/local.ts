/**
 * `ttc local --workers N --config X`: the whole distributed system on this machine — the
 * coordinator in this process and N worker processes over real loopback sockets
 * (coordinator/local-cluster.ts) — with one combined output stream.
 */
import path from 'node:path';
import { UsageError } from '../../core/errors.ts';
import { createLogger } from '../../core/run/log.ts';
import { createProgress } from '../../core/run/progress.ts';
import { LocalCluster, localRunOverrides } from '../../coordinator/local-cluster.ts';
import { PretrainRun } from '../../coordinator/pretrain.ts';
import { readSweepDir } from '../../coordinator/sweep-config.ts';
import { evaluateSweepDir } from '../../coordinator/sweep.ts';
import { checkRunFits } from '../../ml/loop/memory-check.ts';
import { parseFlags, parseWorkers, runConfig } from '../args.ts';
import { INTERRUPTED_EXIT, onInterrupt } from '../interrupt.ts';
import { describeSummary } from '../summary.ts';
import { printEvaluation } from '../sweep-output.ts';

export const usage = `ttc local --workers N --config <file.json> [--set key=value ...]
ttc local --workers N --resume <runs/ID>
ttc local --workers N --evaluate <runs/SWEEP>     the compression + evaluation step of a sweep

Runs a coordinator (in this process) and N worker processes on this machine (loopback sockets, a
fresh random secret unless TTC_SECRET is set) and prints their combined output. The coordinator
waits for all N before the first ring (dist.initialWorkers) and goes on with dist.minWorkers after a
failure. CPU threads are shared out: each worker gets max(1, cores / N) unless the config sets
"threads". Ctrl-C finishes the current step, writes a checkpoint and stops every process (a second
Ctrl-C stops at once); so does killing this process (the workers watch its pipe). Continue with
\`ttc local --resume runs/<id>\` (or \`ttc coordinator --resume\` + workers).`;

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, { workers: { type: 'string', default: '2' }, config: { type: 'string' }, resume: { type: 'string' }, evaluate: { type: 'string' }, set: { type: 'string', multiple: true } }, usage);
  if (!values.config && !values.resume && !values.evaluate) throw new UsageError(`--config, --resume or --evaluate is required\n\n${usage}`);
  const n = parseWorkers(values.workers);
  return values.evaluate ? evaluateLocally(values.evaluate, n) : trainLocally(values, n);
}

async function trainLocally(values: { config?: string; resume?: string; set?: string[] }, n: number): Promise<number> {
  // The config is refused (and nothing written) before any process starts: also when N workers and the coordinator cannot fit this machine.
  const resolved = runConfig(values, usage, (c) => localRunOverrides(c, n));
  const { config } = resolved;
  checkRunFits(config, { workers: n, coordinator: true });
  const runDir = resolved.runDir();
  const log = createLogger('coordinator', runDir.logFile);
  let live: PretrainRun | undefined;
  const cluster = await LocalCluster.start({
    workers: n,
    name: runDir.id,
    log,
    status: () => (live ? { kind: 'run', ...live.status(cluster.registry.workerViews()) } : { kind: 'evaluation', runId: runDir.id, phase: 'starting', workers: [] }),
    trainings: () => (live ? [live.sample()] : []),
  });
  const interrupt = onInterrupt(log, 'interrupted: finishing this step and writing a checkpoint, then stopping the workers (Ctrl-C again to stop at once)', () => cluster.kill(), () => !live?.forming);
  log.info(`run ${runDir.id} (${runDir.dir}): coordinator on ${cluster.url}, ${n} local worker(s)`);
  console.log(`TTC_COORDINATOR_URL=${cluster.url}`);
  try {
    live = new PretrainRun({ config, run: runDir, driver: cluster.driver, log, progress: createProgress(runDir.id), stop: interrupt.signal });
    const summary = await live.run();
    console.log(describeSummary(summary));
    if (!summary.completed) console.log(`continue with: ttc local --workers ${n} --resume ${runDir.dir}`);
    await cluster.stop(true, summary.completed ? 'run complete' : 'run stopped');
    return summary.completed ? 0 : INTERRUPTED_EXIT;
  } catch (e) {
    await cluster.stop(false, `run failed: ${(e as Error).message}`);
    throw e;
  } finally {
    interrupt.dispose();
  }
}

async function evaluateLocally(sweepDir: string, n: number): Promise<number> {
  const sweep = readSweepDir(sweepDir);
  const log = createLogger('evaluate', path.join(sweepDir, 'evaluate.log'));
  let phase = 'starting';
  const cluster = await LocalCluster.start({ workers: n, name: path.basename(sweepDir), log, status: () => ({ kind: 'evaluation', runId: path.basename(sweepDir), phase, workers: cluster.registry.workerViews() }) });
  const interrupt = onInterrupt(log, `interrupted: stopping after the running jobs; finished fine-tunings and cells are kept (continue with \`ttc local --evaluate ${sweepDir}\`; Ctrl-C again to stop at once)`, () => cluster.kill());
  try {
    await cluster.driver.waitForWorkers(n, sweep.base.dist.waitForWorkersSeconds, interrupt.signal);
    const out = await evaluateSweepDir(sweepDir, sweep, { driver: cluster.driver, log, signal: interrupt.signal, progress: (stage, done, total) => (phase = `${stage} [${done}/${total}]`) });
    await cluster.stop(true, 'evaluation complete');
    return printEvaluation(sweepDir, out);
  } catch (e) {
    await cluster.stop(false, `evaluation failed: ${(e as Error).message}`);
    throw e;
  } finally {
    interrupt.dispose();
  }
}
