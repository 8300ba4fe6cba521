/**
 * The single-process training run behind `ttc train`: backend → data → one Replica of the MLM task
 * → the budgeted pretraining loop (ml/loop/pretrain.ts, the same loop the coordinator drives over
 * a ring) → summary.json. Resumes from the run's latest checkpoint.
 */
import type { Config } from '../../core/config/schema.ts';
import type { RunDir } from '../../core/run/rundir.ts';
import type { Logger } from '../../core/run/log.ts';
import { MetricsWriter } from '../../core/run/metrics.ts';
import { createProgress, type Progress } from '../../core/run/progress.ts';
import type { BackendInfo } from '../backend.ts';
import { initRunBackend } from './run-backend.ts';
import { tf } from '../tf.ts';
import { RunController, type RunSummary } from '../train/controller.ts';
import { loadTrainingData } from '../train/data.ts';
import { MlmTask } from '../tasks/mlm.ts';
import { TranslationTask, translationDataOf } from '../tasks/translate.ts';
import { Replica } from './executor.ts';
import type { TrainingTask } from '../tasks/task.ts';
import { pretrainLoop, startingPoint, writeSummary } from './pretrain.ts';

export interface TrainOptions {
  log: Logger;
  progress?: Progress;
  /** Stop (with a checkpoint) after this many steps in this process: used to test resume. */
  stopAfterSteps?: number;
  /** Set by a signal handler: finish the current step, checkpoint, return. */
  shouldStop?: () => boolean;
  /** Called when the data is ready and the training loop starts (from then on shouldStop is heard). */
  onTraining?: () => void;
  /** the backend already started (initRunBackend); else trainRun starts it */
  backend?: BackendInfo;
}

export async function trainRun(config: Config, run: RunDir, opts: TrainOptions): Promise<RunSummary> {
  const { log } = opts;
  const backend = opts.backend ?? (await initRunBackend(config));
  for (const line of backend.log) log.info(`backend: ${line}`);
  log.info(`backend: running on "${backend.name}" (${backend.detail})`);
  const task = config.task === 'translation' ? new TranslationTask(config, await translationDataOf(config, (m) => log.info(m))) : new MlmTask(config, await loadTrainingData(config, log));
  const start = startingPoint(config, run, log);
  // the same buckets as a ring of this config: they define the clip's norm to the last bit
  const replica = new Replica<unknown>(task as TrainingTask, start.trainer, { options: config.dist });
  const progress = opts.progress ?? createProgress(run.id);
  const ctl = new RunController(config, 1, new MetricsWriter(run.metricsFile), progress, start.training);
  log.info(`model: ${start.layout.total.toLocaleString('en')} parameters, ${ctl.flopsPerStep.toExponential(3)} training FLOPs per step (batch ${config.train.batchSize})`);
  try {
    opts.onTraining?.();
    const completed = await pretrainLoop(ctl, replica, { run, log, shouldStop: opts.shouldStop, stopAfterSteps: opts.stopAfterSteps });
    progress.stop();
    return writeSummary(ctl, run, backend, completed);
  } finally {
    replica.dispose();
    log.info(`tensors still allocated: ${tf.memory().numTensors}`);
  }
}
