/**
 * `ttc sweep --config configs/sweep.json`: the whole experiment on this machine — the sweep
 * (coordinator/sweep.ts: every member's pretraining, the compression + evaluation step, the
 * report) driven in this process on N local worker processes started once.
 */
import fs from 'node:fs';
import path from 'node:path';
import { RunDirError, UsageError } from '../../core/errors.ts';
import { writeJsonAtomic } from '../../core/fs.ts';
import { createLogger } from '../../core/run/log.ts';
import { timestamp } from '../../core/run/rundir.ts';
import { LocalCluster, localRunOverrides } from '../../coordinator/local-cluster.ts';
import type { PretrainRun } from '../../coordinator/pretrain.ts';
import { checkSweepFits, loadSweepConfig, readSweepDir, type SweepConfig } from '../../coordinator/sweep-config.ts';
import { runSweep } from '../../coordinator/sweep.ts';
import { parseFlags, parseWorkers } from '../args.ts';
import { INTERRUPTED_EXIT, onInterrupt } from '../interrupt.ts';
import { printEvaluation } from '../sweep-output.ts';
import { SweepView, viewMode } from '../sweep-view.ts';

export const usage = `ttc sweep --config <sweep.json> [--workers N] [--verbose]
ttc sweep --resume <runs/ID> [--verbose]

Trains every (size × budget) member of the sweep data-parallel on N local worker processes (started
once, the coordinator in this process), each with its LR schedule fitted to its budget, writes
runs/<id>/pretraining.{json,csv}, runs the compression + evaluation step when the sweep has one, and
writes the report. Ctrl-C stops at the next step with a checkpoint; a stopped or killed sweep
continues where it stopped with --resume.

The console shows a progress view: a line per member and phase (pretrain, finetune, prune, evaluate,
report) with steps, loss and ETA — redrawn in place on a terminal, a line per phase start and end
and one every 10 s otherwise — then where the results are. Warnings and errors are shown as they
come; every log line goes to runs/<id>/console.log (all of them, as --verbose shows them),
members/<id>/train.log (a member's log, a line per step, its workers' output), sweep.log and
evaluate.log.

  --verbose   the full log stream on the console instead of the progress view`;

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, { config: { type: 'string' }, resume: { type: 'string' }, workers: { type: 'string' }, verbose: { type: 'boolean' } }, usage);
  let sweep: SweepConfig;
  let sweepDir: string;
  if (values.resume) {
    sweepDir = values.resume;
    sweep = readSweepDir(sweepDir);
  } else {
    if (!values.config) throw new UsageError(`--config or --resume is required\n\n${usage}`);
    sweep = loadSweepConfig(values.config);
    sweepDir = path.join(sweep.outputDir, sweep.sweepId || `${path.basename(values.config, '.json')}-${timestamp()}`);
    if (fs.existsSync(sweepDir)) throw new RunDirError(`${sweepDir} exists: continue it with \`ttc sweep --resume ${sweepDir}\``);
  }
  if (values.workers) sweep.workers = parseWorkers(values.workers);
  // every member, before anything is written: its N workers and the coordinator all run here
  checkSweepFits(sweep, { workers: sweep.workers, coordinator: true });
  if (!values.resume) {
    fs.mkdirSync(sweepDir, { recursive: true });
    writeJsonAtomic(path.join(sweepDir, 'sweep.json'), sweep);
  }
  const members = sweep.sizes.length * sweep.budgets.length * Math.max(1, sweep.seeds.length);
  const view = new SweepView({ file: path.join(sweepDir, 'console.log'), mode: viewMode(values.verbose === true), members });
  const log = createLogger('sweep', path.join(sweepDir, 'sweep.log'), { console: view.console });
  if (!values.verbose) view.note(`sweep ${path.basename(sweepDir)}: ${members} members on ${sweep.workers} local workers${sweep.evaluation ? ', then compression + evaluation' : ''}; full logs in ${path.join(sweepDir, 'console.log')} (--verbose shows them here)`);
  let live: PretrainRun | undefined;
  let phase = 'starting';
  let cluster: LocalCluster | undefined;
  let interrupt: ReturnType<typeof onInterrupt> | undefined;
  try {
    const c: LocalCluster = (cluster = await LocalCluster.start({
      workers: sweep.workers,
      name: path.basename(sweepDir),
      log,
      status: () => (live ? { kind: 'run', ...live.status(cluster!.registry.workerViews()) } : { kind: 'evaluation', runId: path.basename(sweepDir), phase, workers: cluster!.registry.workerViews() }),
      trainings: () => (live ? [live.sample()] : []),
      output: (worker, line, stream) => view.workerOutput(worker, line, stream),
    }));
    interrupt = onInterrupt(log, `interrupted: finishing this step and writing a checkpoint; continue with \`ttc sweep --resume ${sweepDir}\` (Ctrl-C again to stop at once)`, () => c.kill(), () => !live?.forming);
    await cluster.driver.waitForWorkers(sweep.workers, sweep.base.dist.waitForWorkersSeconds, interrupt.signal);
    const out = await runSweep(sweep, sweepDir, {
      driver: cluster.driver,
      log,
      console: view.console,
      onPhase: view.onPhase,
      memberProgress: (runId, logFile) => view.memberProgress(runId, logFile),
      memberOverrides: localRunOverrides(sweep.base, sweep.workers),
      stop: interrupt.signal,
      onMember: (m) => (live = m),
      progress: (stage, done, total) => (phase = `${stage} [${done}/${total}]`),
    });
    await cluster.stop(true, out.completed ? 'sweep complete' : 'sweep stopped');
    view.stop();
    if (!out.completed) {
      console.log(`sweep ${path.basename(sweepDir)} stopped; continue with: ttc sweep --resume ${sweepDir}`);
      return INTERRUPTED_EXIT;
    }
    const code = sweep.evaluation ? printEvaluation(sweepDir, out) : (out.conclusion.forEach((l) => console.log(l)), 0);
    console.log(`sweep ${path.basename(sweepDir)}: ${out.members.length} members trained`);
    for (const line of out.best) console.log(line);
    console.log(`results: ${['pretraining.json', 'pretraining.csv', 'report.html', 'report.md', 'results.csv'].map((f) => path.join(sweepDir, f)).join(', ')}`);
    console.log(`logs: ${path.join(sweepDir, 'console.log')} (everything), ${path.join(sweepDir, 'members', '<member>', 'train.log')} (each member, a line per step)`);
    return code;
  } catch (e) {
    await cluster?.stop(false, `sweep failed: ${(e as Error).message}`);
    throw e;
  } finally {
    view.stop();
    interrupt?.dispose();
  }
}
