/**
 * The Prometheus series a coordinator serves at `/metrics` (docs/metrics.md). Nothing is counted
 * here: each scrape reads the same live state `ttc status` shows (PretrainRun's view, the
 * registry's workers, a run server's queue) through prom-client `collect()` callbacks, into a
 * private Registry (never the process-wide default one).
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { StepTiming } from '../ml/train/controller.ts';
import { RUN_STATES, type RunState, type TrainingView } from '../protocol/index.ts';
import type { RunTimeline } from './pretrain.ts';

/** One training run as the metrics see it: its status view, its last step's time split and how often its ring was re-formed. */
export interface TrainingSample {
  view: TrainingView;
  timing: StepTiming | undefined;
  /** seconds of the last step (null before the first) */
  stepSeconds: number | null;
  reformations: number;
  /** the per-rank step splits and ring history the dashboard shows (not a metric) */
  timeline?: RunTimeline;
}

export interface MetricsSource {
  workers: () => number;
  /** the training runs to report: the live one, and on a run server those finished since it started */
  trainings: () => TrainingSample[];
  /** a run server's queue: the state of each run */
  runStates?: () => RunState[];
}

const ms = (x: number | undefined) => (x === undefined ? null : x / 1000);

/** Per-run series: name, help, kind, and the value of a sample (null: not known yet, left out). */
const PER_RUN: Array<{ name: string; help: string; counter?: true; value: (s: TrainingSample) => number | null }> = [
  { name: 'ttc_train_step', help: 'Training steps completed', value: (s) => s.view.step },
  { name: 'ttc_train_steps_planned', help: 'Training steps the budget allows (grows while a seconds budget calibrates)', value: (s) => s.view.totalSteps },
  { name: 'ttc_train_loss', help: 'Training loss of the last step', value: (s) => s.view.trainLoss },
  { name: 'ttc_validation_loss', help: 'Validation loss of the last evaluation', value: (s) => s.view.valLoss },
  { name: 'ttc_train_tokens_per_second', help: 'Tokens per second of the last step (all workers)', value: (s) => s.view.tokensPerSecond },
  { name: 'ttc_train_tokens_total', help: 'Tokens trained on', counter: true, value: (s) => s.view.tokensSeen },
  { name: 'ttc_budget_used_ratio', help: 'Fraction of the budget used (0 to 1)', value: (s) => s.view.budgetFraction },
  { name: 'ttc_train_flops_total', help: 'Training FLOPs used (what a FLOP budget counts)', counter: true, value: (s) => s.view.flopsUsed },
  { name: 'ttc_train_seconds_total', help: 'Seconds of training steps (what a seconds budget counts)', counter: true, value: (s) => s.view.secondsUsed },
  { name: 'ttc_step_seconds', help: 'Duration of the last step', value: (s) => s.stepSeconds },
  { name: 'ttc_step_compute_seconds', help: 'Last step: forward, backward and read-back (mean over the workers)', value: (s) => ms(s.timing?.computeMs) },
  { name: 'ttc_step_update_seconds', help: 'Last step: the optimizer update (mean over the workers)', value: (s) => ms(s.timing?.updateMs) },
  { name: 'ttc_step_allreduce_seconds', help: 'Last step: time in the gradient all-reduce (mean over the workers)', value: (s) => ms(s.timing?.commMs) },
  { name: 'ttc_step_allreduce_hidden_seconds', help: 'Last step: the part of the all-reduce hidden behind computation', value: (s) => ms(s.timing?.commHiddenMs) },
  { name: 'ttc_last_checkpoint_step', help: 'Step of the last checkpoint (the restart point)', value: (s) => s.view.lastCheckpointStep },
  { name: 'ttc_worker_failures_total', help: 'Worker failures the run survived (including those before a coordinator restart)', counter: true, value: (s) => s.view.failures.length },
  { name: 'ttc_ring_reformations_total', help: 'Times this coordinator re-formed the run\'s ring after a failure', counter: true, value: (s) => s.reformations },
];

/** A private registry of every ttc series, read from `source` at each scrape. */
export function metricsRegistry(source: MetricsSource): Registry {
  const registry = new Registry();
  // One snapshot of the runs per scrape, not one per series: a scrape's collect()s run back to back
  // (no I/O between them), so the snapshot is dropped at the next turn of the event loop.
  let snapshot: TrainingSample[] | undefined;
  const trainings = (): TrainingSample[] => {
    if (!snapshot) {
      snapshot = source.trainings();
      setImmediate(() => (snapshot = undefined));
    }
    return snapshot;
  };
  for (const d of PER_RUN) {
    const Kind = d.counter ? Counter : Gauge;
    new Kind({
      name: d.name,
      help: d.help,
      labelNames: ['run'],
      registers: [registry],
      collect(this: Gauge | Counter) {
        this.reset(); // runs that are gone leave no stale series
        for (const s of trainings()) {
          const v = d.value(s);
          if (v === null) continue;
          if (this instanceof Gauge) this.set({ run: s.view.runId }, v);
          else this.inc({ run: s.view.runId }, v);
        }
      },
    });
  }
  new Gauge({ name: 'ttc_workers_connected', help: 'Workers registered with this coordinator', registers: [registry], collect() { this.set(source.workers()); } });
  const runStates = source.runStates;
  if (runStates) {
    new Gauge({
      name: 'ttc_runs',
      help: 'Runs in this server\'s queue, by state',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        const states = runStates();
        for (const state of RUN_STATES) this.set({ state }, states.filter((x) => x === state).length);
      },
    });
  }
  collectDefaultMetrics({ register: registry }); // process_* and nodejs_* (CPU, memory, event loop lag)
  return registry;
}
