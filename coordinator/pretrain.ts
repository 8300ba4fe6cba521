/**
 * Distributed pretraining of one run, as a short driver over the distributed driver
 * (formation.ts) and the one pretraining loop (ml/loop/pretrain.ts): it keeps the run's restart
 * point (its last checkpoint), forms a ring of the connected workers, loads that point into it and
 * runs the loop on it; when a worker fails, the ring is re-formed from the remaining (or newly
 * joined) workers and training resumes from the restart point, so at most one checkpoint interval
 * is redone and the budget counts every step once. The failures it survives are kept in
 * runs/<id>/failures.json as they happen, so a restarted coordinator (--resume) still lists the
 * earlier ones in summary.json. It never computes gradients.
 */
import fs from 'node:fs';
import type { Config } from '../core/config/schema.ts';
import { writeJsonAtomic } from '../core/fs.ts';
import type { Logger } from '../core/run/log.ts';
import { MetricsWriter } from '../core/run/metrics.ts';
import type { Progress } from '../core/run/progress.ts';
import type { RunDir } from '../core/run/rundir.ts';
import { pretrainLoop, startingPoint, writeSummary, type RunSnapshot } from '../ml/loop/pretrain.ts';
import { RunController, type RunSummary } from '../ml/train/controller.ts';
import { orNull, type TrainingView } from '../protocol/index.ts';
import type { TrainingSample } from './metrics.ts';
import { anySignal, RunError, type Driver, type RankSplit, type RingFormation } from './formation.ts';

/** One step's per-rank time split (the dashboard's timeline). */
export interface StepSplit {
  step: number;
  formation: number;
  ranks: RankSplit[];
}

/** A ring formed for the run (with its workers and the step it starts from) or a failure that ended one. */
export interface RingEvent {
  at: string;
  kind: 'formed' | 'failure';
  formation: number;
  workers?: string[];
  fromStep?: number;
  reason?: string;
}

/** What this coordinator saw of the run beyond metrics.jsonl: the last steps' per-rank splits and the ring's history. */
export interface RunTimeline {
  splits: StepSplit[];
  events: RingEvent[];
}

/** steps of per-rank splits kept in memory */
const KEEP_SPLITS = 60;
/** ring events kept in memory (a run that keeps failing keeps its latest) */
const KEEP_EVENTS = 200;

export interface PretrainRunOptions {
  config: Config;
  run: RunDir;
  driver: Driver;
  log: Logger;
  progress: Progress;
  /** aborts the run between steps (`ttc cancel`, a shutdown); its last checkpoint stays */
  signal?: AbortSignal;
  /**
   * Ctrl-C: the run finishes its current step, writes a checkpoint and ends as not completed
   * (resumable); a wait for workers ends at once.
   */
  stop?: AbortSignal;
}

export class PretrainRun {
  private readonly ctl: RunController;
  private snapshot: RunSnapshot;
  private ring: RingFormation | undefined;
  private phaseNow = 'waiting for workers';
  private readonly startedAt = Date.now();
  /** every worker failure of the run, this coordinator's and its predecessors' */
  readonly failures: string[];
  /** rings this coordinator re-formed after a failure */
  private reformations = 0;
  private readonly splits: StepSplit[] = [];
  private readonly events: RingEvent[] = [];

  constructor(private readonly opts: PretrainRunOptions) {
    const { config, run, log } = opts;
    this.failures = earlierFailures(run, log);
    const start = startingPoint(config, run, log);
    this.ctl = new RunController(config, start.training?.worldSize ?? config.dist.minWorkers, new MetricsWriter(run.metricsFile), opts.progress, start.training);
    this.snapshot = { trainer: start.trainer, training: structuredClone(this.ctl.state) };
  }

  /** True while a ring is being formed (its workers load their data, then the state): no step runs, there is nothing to checkpoint. */
  get forming(): boolean {
    return this.phaseNow.startsWith('forming');
  }

  /** Runs the budget (or until stopped); writes summary.json and returns it. */
  async run(): Promise<RunSummary> {
    const { config, run, log, driver, signal, stop } = this.opts;
    const { dist } = config;
    const timeoutMs = dist.stepTimeoutSeconds * 1000;
    try {
      const completed = await driver.withRing(
        // Joining may build the tokenizer and data cache first: allow for that.
        { config, task: config.task === 'translation' ? { kind: 'translate' } : { kind: 'mlm' }, label: run.id, timeoutMs, setupTimeoutMs: Math.max(timeoutMs, 180_000) },
        {
          maxAttempts: Infinity,
          // The first ring waits for dist.initialWorkers; after a failure the run goes on with dist.minWorkers.
          minWorkers: (attempt) => (attempt === 1 && dist.initialWorkers > 0 ? Math.max(dist.initialWorkers, dist.minWorkers) : dist.minWorkers),
          waitSeconds: dist.waitForWorkersSeconds,
          choose: (all) => {
            // the members are chosen: from here until the first step, the ring is being formed
            this.phaseNow = 'forming a ring (the workers load their data)';
            return dist.maxWorkers > 0 ? all.slice(0, dist.maxWorkers) : all;
          },
          signal: anySignal(signal, stop),
          onFailure: (e, failed) => {
            this.event({ kind: 'failure', formation: failed?.id ?? 0, reason: e.message });
            this.failures.push(e.message);
            this.reformations++;
            writeJsonAtomic(run.failuresFile, this.failures);
            log.warn(`re-forming the ring from the checkpoint at step ${this.snapshot.training.step} (steps after it are redone; the budget counts them once)`);
          },
        },
        async (ring) => {
          this.ring = ring;
          this.phaseNow = `forming ring ${ring.id} with ${ring.worldSize} worker(s)`;
          // Every worker starts from the same bytes: the last checkpoint (or the initial weights).
          await ring.load(this.snapshot.trainer);
          this.ctl.restore(this.snapshot.training, ring.worldSize);
          this.event({ kind: 'formed', formation: ring.id, workers: ring.members.map((w) => w.name), fromStep: this.snapshot.training.step });
          ring.onStepSplit = (step, ranks) => {
            this.splits.push({ step, formation: ring.id, ranks });
            if (this.splits.length > KEEP_SPLITS) this.splits.shift();
          };
          this.phaseNow = 'training';
          return pretrainLoop(this.ctl, ring, {
            run,
            log,
            beforeStep: () => this.beforeStep(),
            shouldStop: () => stop?.aborted === true,
            onCheckpoint: (s) => (this.snapshot = s),
          });
        },
      );
      this.phaseNow = completed ? 'done' : 'stopped (resumable)';
      return writeSummary(this.ctl, run, { name: this.ring?.backend.split(':')[0] ?? '', detail: this.ring?.backend ?? '' }, completed, { failures: this.failures });
    } catch (e) {
      this.phaseNow = `failed: ${(e as Error).message}`;
      throw e;
    } finally {
      this.opts.progress.stop();
    }
  }

  private event(e: Omit<RingEvent, 'at'>): void {
    this.events.push({ at: new Date().toISOString(), ...e });
    if (this.events.length > KEEP_EVENTS) this.events.shift();
  }

  /** The last steps' per-rank splits and the ring's history (copies). */
  timeline(): RunTimeline {
    return { splits: this.splits.slice(), events: this.events.slice() };
  }

  private beforeStep(): void {
    const signal = this.opts.signal;
    if (signal?.aborted) throw new RunError(`cancelled${signal.reason ? `: ${String(signal.reason)}` : ''} (the last checkpoint is at step ${this.snapshot.training.step})`);
  }

  /** The live view for `ttc status`. */
  status(workers: TrainingView['workers']): TrainingView {
    const s = this.ctl.state;
    const { config, run } = this.opts;
    return {
      runId: run.id,
      runDir: run.dir,
      phase: this.phaseNow,
      formation: this.ring?.id ?? 0,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      workers,
      step: s.step,
      totalSteps: s.totalSteps,
      budget: config.budget,
      budgetFraction: orNull(Math.min(1, this.ctl.budgetFraction())),
      etaSeconds: orNull(this.ctl.etaSeconds()),
      flopsUsed: s.flopsUsed,
      secondsUsed: s.secondsUsed,
      tokensSeen: s.tokensSeen,
      trainLoss: orNull(this.ctl.lastTrainLoss),
      valLoss: orNull(this.ctl.lastValLoss),
      tokensPerSecond: orNull((config.train.batchSize * config.model.seqLen * s.worldSize) / this.ctl.lastStepSeconds),
      lastCheckpointStep: this.snapshot.training.step,
      failures: this.failures,
    };
  }

  /** What `/metrics` reports of this run (coordinator/metrics.ts): the status view and the last step's time split. */
  sample(): TrainingSample {
    return { view: this.status([]), timing: this.ctl.lastTiming, stepSeconds: orNull(this.ctl.lastStepSeconds), reformations: this.reformations, timeline: this.timeline() };
  }
}

/** The failures recorded by earlier coordinators of this run (none for a new run). */
function earlierFailures(run: RunDir, log: Logger): string[] {
  if (!fs.existsSync(run.failuresFile)) return [];
  try {
    const list: unknown = JSON.parse(fs.readFileSync(run.failuresFile, 'utf8'));
    if (Array.isArray(list) && list.every((f) => typeof f === 'string')) {
      log.info(`${list.length} worker failure(s) before this coordinator started (${run.failuresFile})`);
      return list;
    }
  } catch {
    // reported below: the history is lost, the run is not
  }
  log.warn(`${run.failuresFile} is not a list of failures: starting a new one`);
  return [];
}
