/**
 * The run's bookkeeping, used by the one pretraining loop (ml/loop/pretrain.ts) whatever executes
 * its steps: budget → step count, LR per step, FLOPs/seconds/
 * tokens accounting, data position, metrics rows, evaluation and checkpoint cadence, summary.
 * It never computes anything itself: whoever runs the steps reports them here.
 */
import type { Config } from '../../core/config/schema.ts';
import { numMaskedPerSeq } from '../data/masking.ts';
import { mlmStepFlops, seq2seqStepFlops } from '../flops.ts';
import { paramLayout, type ModelDims, type ParamLayout } from '../model/spec.ts';
import type { Seq2SeqDims } from '../model/seq2seq.ts';
import { estimateStepsForSeconds, fixedStepBudget } from './budget.ts';
import { learningRate, warmupSteps } from './schedule.ts';
import type { TrainingState } from '../checkpoint/checkpoint.ts';
import type { MetricsRow, MetricsWriter } from '../../core/run/metrics.ts';

/** A step's time split (metrics.jsonl columns), ms. */
export type StepTiming = Pick<MetricsRow, 'computeMs' | 'updateMs' | 'commMs' | 'commHiddenMs'>;
import type { Progress } from '../../core/run/progress.ts';

export function modelDims(c: Config): ModelDims {
  const { layers, hidden, heads, ffn, seqLen, vocab } = c.model;
  return { layers, hidden, heads, ffn, seqLen, vocab };
}

/** The translation model's dimensions (task translation): the encoder's are model.*, the decoder's depth translation.decoderLayers (0 = model.layers). */
export function seq2seqDims(c: Config): Seq2SeqDims {
  return { ...modelDims(c), decoderLayers: c.translation.decoderLayers || c.model.layers };
}

/** The parameter layout the run's task trains (config.task). */
export function runLayout(c: Config): ParamLayout {
  if (c.task === 'translation') return paramLayout(modelDims(c), { kind: 'seq2seq', decoderLayers: seq2seqDims(c).decoderLayers });
  return paramLayout(modelDims(c));
}

export interface PlannedStep {
  step: number; // 0-based index of the step to run
  lr: number;
  /** Position of the first sequence of this step's global batch. */
  dataPosition: TrainingState['dataPosition'];
}

export interface RunSummary {
  runId: string;
  runDir: string;
  backend: string;
  backendDetail: string;
  workers: number;
  parameters: number;
  flopsPerStep: number;
  steps: number;
  totalSteps: number;
  flopsUsed: number;
  budget: Config['budget'];
  secondsUsed: number;
  tokensSeen: number;
  finalTrainLoss: number;
  finalValLoss: number;
  finalValPerplexity: number;
  /** ln(vocab): the uniform baseline. */
  unigramBaseline: number;
  /** Cross-entropy of the validation targets under the training unigram frequencies (NaN if not computed). */
  unigramEntropy: number;
  /** task translation: corpus BLEU of the last evaluation (greedy, and beam search of translation.beam) */
  bleu?: number;
  bleuBeam?: number;
  completed: boolean;
}

export class RunController {
  readonly dims: ModelDims;
  state: TrainingState;
  flopsPerStep: number;
  lastTrainLoss = NaN;
  /** seconds of the last step (NaN before the first) */
  lastStepSeconds = NaN;
  /** the last step's time split (undefined before the first, or when its executor reports none) */
  lastTiming: StepTiming | undefined;
  lastValLoss = NaN;
  /** cross-entropy of the validation targets under the training unigram frequencies (a baseline), once an evaluation reported it */
  unigramEntropy = NaN;
  private stepSecondsThisProcess = 0;
  private stepsThisProcess = 0;
  private calibratedPerStep = 0;
  private readonly wallStart: number;

  constructor(
    readonly config: Config,
    worldSize: number,
    private readonly metrics: MetricsWriter,
    private readonly progress: Progress,
    resumed?: TrainingState,
  ) {
    this.dims = modelDims(config);
    this.flopsPerStep = this.stepFlops(worldSize);
    this.state = resumed ?? {
      step: 0,
      totalSteps: config.budget.kind === 'seconds' ? 0 : fixedStepBudget(config.budget, this.flopsPerStep),
      flopsUsed: 0,
      secondsUsed: 0,
      tokensSeen: 0,
      dataPosition: { epoch: 0, offset: 0 },
      rngState: [0, 0, 0, 0],
      worldSize,
    };
    if (resumed) {
      this.metrics.truncateAfter(resumed.step);
      if (resumed.worldSize !== worldSize) this.refit(worldSize);
      this.calibratedPerStep = resumed.step > 0 ? resumed.secondsUsed / resumed.step : 0;
    }
    this.wallStart = Date.now() - this.state.secondsUsed * 1000;
  }

  private stepFlops(worldSize: number): number {
    const { config } = this;
    if (config.task === 'translation') return seq2seqStepFlops(seq2seqDims(config), config.train.batchSize, this.dims.seqLen, this.dims.seqLen).training * worldSize;
    return mlmStepFlops(this.dims, config.train.batchSize, numMaskedPerSeq(this.dims.seqLen)).training * worldSize;
  }

  /** Back to a checkpointed state (after a failed ring): later metrics rows are dropped, a new world size re-fits the budget. */
  restore(state: TrainingState, worldSize: number): void {
    this.state = structuredClone(state);
    this.metrics.truncateAfter(state.step);
    if (state.worldSize !== worldSize) this.refit(worldSize);
  }

  get worldSize(): number {
    return this.state.worldSize;
  }

  /**
   * A new world size (a ring re-formed with fewer or more workers): the global batch and FLOPs per
   * step change, so a FLOP budget's remaining steps are re-fitted to what is left of the budget.
   */
  refit(worldSize: number): void {
    this.state.worldSize = worldSize;
    this.flopsPerStep = this.stepFlops(worldSize);
    if (this.config.budget.kind === 'flops') {
      this.state.totalSteps = this.state.step + Math.floor((this.config.budget.flops - this.state.flopsUsed) / this.flopsPerStep);
    }
  }

  /** For a seconds budget: the measured seconds of a (gradient-only) step before training starts, counted against the budget. */
  calibrate(secondsPerStep: number, secondsSpent: number, flopsSpent: number): void {
    this.calibratedPerStep = secondsPerStep;
    this.state.secondsUsed += secondsSpent;
    this.state.flopsUsed += flopsSpent;
    this.state.totalSteps = estimateStepsForSeconds(this.config.budget.seconds, 0, this.state.secondsUsed, secondsPerStep);
  }

  needsCalibration(): boolean {
    return this.config.budget.kind === 'seconds' && this.state.totalSteps === 0;
  }

  /** The next step to run, or null when the budget is spent. */
  next(): PlannedStep | null {
    const s = this.state;
    if (this.config.budget.kind === 'seconds') {
      const perStep = this.stepsThisProcess > 0 ? this.stepSecondsThisProcess / this.stepsThisProcess : this.calibratedPerStep;
      const estimate = estimateStepsForSeconds(this.config.budget.seconds, s.step, s.secondsUsed, perStep);
      // Time ran out before the step planned as the last (a step slower than the estimate): one
      // closing step at LR 0, so every run ends its schedule; the overshoot is at most that step.
      const scheduleEnded = s.step > 0 && s.step >= s.totalSteps;
      s.totalSteps = estimate <= s.step && s.step > 0 && !scheduleEnded ? s.step + 1 : estimate;
    }
    if (s.step >= s.totalSteps) return null;
    const warm = warmupSteps(s.totalSteps, this.config.optimizer.warmupFraction);
    return { step: s.step, lr: learningRate(s.step, s.totalSteps, warm, this.config.optimizer.lr), dataPosition: { ...s.dataPosition } };
  }

  /** Records a completed step; `advance` moves the data position by the global batch. */
  completeStep(p: PlannedStep, r: { loss: number; seconds: number; gradNorm?: number; nextPosition: TrainingState['dataPosition']; timing?: StepTiming }): MetricsRow {
    const s = this.state;
    const tokens = this.config.train.batchSize * this.dims.seqLen * s.worldSize;
    s.step = p.step + 1;
    s.flopsUsed += this.flopsPerStep;
    s.secondsUsed += r.seconds;
    s.tokensSeen += tokens;
    s.dataPosition = r.nextPosition;
    this.lastTrainLoss = r.loss;
    this.lastStepSeconds = r.seconds;
    this.lastTiming = r.timing;
    this.stepsThisProcess += 1;
    this.stepSecondsThisProcess += r.seconds;
    return {
      step: s.step,
      tokens: s.tokensSeen,
      flops: s.flopsUsed,
      seconds: s.secondsUsed,
      wallSeconds: (Date.now() - this.wallStart) / 1000,
      lr: p.lr,
      trainLoss: r.loss,
      gradNorm: r.gradNorm,
      tokensPerSecond: tokens / r.seconds,
      ...r.timing,
    };
  }

  get isLastStep(): boolean {
    return this.state.step >= this.state.totalSteps;
  }

  shouldEvaluate(): boolean {
    return this.isLastStep || this.state.step % this.config.train.evalEvery === 0;
  }

  shouldCheckpoint(): boolean {
    return this.isLastStep || this.state.step % this.config.train.checkpointEvery === 0;
  }

  /** Writes the step's metrics row (with the validation loss when one was computed) and updates progress. */
  record(row: MetricsRow, valLoss?: number): void {
    if (valLoss !== undefined) {
      this.lastValLoss = valLoss;
      this.metrics.append({ ...row, valLoss, valPerplexity: Math.exp(valLoss), ...this.bleuColumns() });
    } else if (row.step % this.config.train.logEvery === 0) {
      this.metrics.append(row);
    }
    const s = this.state;
    this.progress.update({
      step: s.step,
      totalSteps: s.totalSteps,
      budgetFraction: Math.min(1, this.budgetFraction()),
      loss: row.trainLoss,
      valLoss: this.lastValLoss,
      tokensPerSecond: row.tokensPerSecond,
      etaSeconds: this.etaSeconds(),
    });
  }

  /** Seconds left at this process's mean step time so far (validation and checkpoints included); undefined before a step. */
  etaSeconds(): number | undefined {
    if (this.stepsThisProcess === 0) return undefined;
    return (this.state.totalSteps - this.state.step) * (this.stepSecondsThisProcess / this.stepsThisProcess);
  }

  /** task translation: BLEU of the last evaluation (NaN before one) */
  lastBleu = NaN;
  lastBleuBeam = NaN;

  /** What an evaluation reported: the validation loss and the unigram baseline (translation: BLEU). */
  recordEval(v: { loss?: number; unigramEntropy?: number; bleu?: number; bleuBeam?: number }): void {
    if (v.bleu !== undefined) this.lastBleu = v.bleu;
    if (v.bleuBeam !== undefined) this.lastBleuBeam = v.bleuBeam;
    if (v.loss !== undefined) this.lastValLoss = v.loss;
    if (v.unigramEntropy !== undefined) this.unigramEntropy = v.unigramEntropy;
  }

  /** The validation loss before the first step (a metrics row at step 0). */
  recordInitialEval(valLoss: number): void {
    this.lastValLoss = valLoss;
    this.metrics.append({ step: 0, tokens: 0, flops: 0, seconds: 0, wallSeconds: 0, lr: 0, valLoss, valPerplexity: Math.exp(valLoss), ...this.bleuColumns() });
  }

  /** task translation: the last evaluation's BLEU as metrics columns */
  private bleuColumns(): { bleu?: number; bleuBeam?: number } {
    const out: { bleu?: number; bleuBeam?: number } = {};
    if (Number.isFinite(this.lastBleu)) out.bleu = this.lastBleu;
    if (Number.isFinite(this.lastBleuBeam)) out.bleuBeam = this.lastBleuBeam;
    return out;
  }

  budgetFraction(): number {
    const { budget } = this.config;
    const s = this.state;
    if (budget.kind === 'flops') return s.flopsUsed / budget.flops;
    if (budget.kind === 'seconds') return s.secondsUsed / budget.seconds;
    return s.step / Math.max(1, s.totalSteps);
  }

  summary(run: { id: string; dir: string }, backend: { name: string; detail: string }, completed: boolean): RunSummary {
    const s = this.state;
    return {
      runId: run.id,
      runDir: run.dir,
      backend: backend.name,
      backendDetail: backend.detail,
      workers: s.worldSize,
      parameters: runLayout(this.config).total,
      flopsPerStep: this.flopsPerStep,
      steps: s.step,
      totalSteps: s.totalSteps,
      flopsUsed: s.flopsUsed,
      budget: this.config.budget,
      secondsUsed: s.secondsUsed,
      tokensSeen: s.tokensSeen,
      finalTrainLoss: this.lastTrainLoss,
      finalValLoss: this.lastValLoss,
      finalValPerplexity: Math.exp(this.lastValLoss),
      unigramBaseline: Math.log(this.dims.vocab),
      unigramEntropy: this.unigramEntropy,
      ...(this.config.task === 'translation' ? { bleu: this.lastBleu, bleuBeam: this.lastBleuBeam } : {}),
      completed,
    };
  }
}
