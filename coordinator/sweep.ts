/**
 * A whole sweep, in-process on the workers this coordinator has: every (size × budget [× seed])
 * member pretrained as a distributed run (pretrain.ts) with its own schedule fitted to its own
 * budget, the pretraining results (pretraining.{json,csv}), the compression + evaluation step
 * (evaluation.ts) and the report. The one orchestration path of both front ends: `ttc sweep`
 * (local worker processes, cli/commands/sweep.ts) and the run server (`ttc serve`, server.ts).
 * Resumable: completed members are skipped, an interrupted one continues from its checkpoint,
 * finished fine-tunes and cells are kept.
 */
import fs from 'node:fs';
import path from 'node:path';
import { resolveConfig } from '../core/config/load.ts';
import type { Config } from '../core/config/schema.ts';
import { oneLine, RunDirError } from '../core/errors.ts';
import { writeFileAtomic, writeJsonAtomic } from '../core/fs.ts';
import { createLogger, type ConsoleSink, type Logger } from '../core/run/log.ts';
import { readMetrics } from '../core/run/metrics.ts';
import { createProgress, type Progress } from '../core/run/progress.ts';
import { createRunDir, openRunDir, removeUnstartedRunDir, runDirFor } from '../core/run/rundir.ts';
import { readSummary } from '../ml/loop/pretrain.ts';
import { runLayout } from '../ml/train/controller.ts';
import { nonEmbeddingParameterCount, parameterCount } from '../ml/model/spec.ts';
import { bestSizePerBudget } from '../report/conclusion.ts';
import type { Cell, Finetune, ReportData } from '../report/types.ts';
import { writeReport } from '../report/write.ts';
import { evaluateSweep, type EvaluationOptions, type EvaluationProgress } from './evaluation.ts';
import { anySignal, RunError, type Driver } from './formation.ts';
import type { PhaseListener } from './phases.ts';
import { PretrainRun } from './pretrain.ts';
import { compressTranslationSweep } from './translation.ts';
import { memberConfig, memberSeeds, type SweepConfig } from './sweep-config.ts';

export interface MemberResult {
  sizeId: string;
  budgetId: string;
  /** the training seed of this repeat (sweeps with `seeds`) */
  seed?: number;
  runDir: string;
  parameters: number;
  nonEmbeddingParameters: number;
  steps: number;
  flops: number;
  seconds: number;
  valLoss: number;
  curve: Array<{ step: number; flops: number; seconds: number; valLoss: number; bleu?: number; bleuBeam?: number }>;
  /** task translation: the final evaluation's BLEU (greedy, beam search) */
  bleu?: number;
  bleuBeam?: number;
}

export interface SweepRunOptions {
  driver: Driver;
  /** the sweep's own log lines */
  log: Logger;
  /** settings forced onto every member's run config (`ttc sweep` shares the machine's cores out among its local workers) */
  memberOverrides?: Record<string, unknown>;
  /** where the sweep is (a stage and how far it is), for status views */
  progress?: EvaluationProgress;
  /** start, progress and end of each phase: pretraining per member, fine-tunings, prunings, cells, report (a progress view) */
  onPhase?: PhaseListener;
  /** where the members' and the evaluation step's loggers print (default stderr); their files get every line */
  console?: ConsoleSink;
  /** a member's training progress (default: a bar or sparse lines on stderr, core/run/progress.ts) */
  memberProgress?: (runId: string, logFile: string) => Progress;
  /** the member now training (for a live status view), undefined between members */
  onMember?: (run: PretrainRun | undefined) => void;
  /** cancels between steps and between stages (`ttc cancel`, shutdown) */
  signal?: AbortSignal;
  /** Ctrl-C: the member in training stops at its next step with a checkpoint, and the sweep stops (resumable) */
  stop?: AbortSignal;
}

export interface SweepOutcome {
  members: MemberResult[];
  /** the report's computed conclusion, line by line */
  conclusion: string[];
  /** the best size per budget, one line each */
  best: string[];
  /** compression cells in the report */
  cells: number;
  /** evaluation jobs that failed on every attempt */
  failures: string[];
  /** false when stopped early (Ctrl-C): continue with --resume */
  completed: boolean;
}

function checkCancelled(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new RunError(`cancelled before ${what}`);
}

/** Pretrains every member not yet complete; returns every member's result (or undefined when a stop was asked for). */
export async function pretrainMembers(sweep: SweepConfig, sweepDir: string, o: SweepRunOptions): Promise<MemberResult[] | undefined> {
  const membersDir = path.join(sweepDir, 'members');
  fs.mkdirSync(membersDir, { recursive: true });
  const results: MemberResult[] = [];
  const seeds = memberSeeds(sweep);
  const total = sweep.sizes.length * sweep.budgets.length * seeds.length;
  let index = 0;
  for (const budget of sweep.budgets) {
    for (const size of sweep.sizes) {
      for (const seed of seeds) {
        index += 1;
        const config = resolveConfig(memberConfig(sweep, size, budget, membersDir, seed), o.memberOverrides);
        const runDir = path.join(membersDir, config.runId);
        const place = `(${size.layers} layers, d=${size.hidden}; budget ${budget.kind} ${budget.value})`;
        const label = `member ${index}/${total} ${config.runId} ${place}`;
        let summary = readSummary(runDir);
        if (summary?.completed) {
          o.log.info(`${label}: already complete, skipped`);
          o.onPhase?.({ phase: 'pretrain', id: config.runId, state: 'skipped', detail: `member ${index}/${total} ${place}: already complete, skipped` });
        } else {
          checkCancelled(o.signal, label);
          o.progress?.(`pretraining ${label}`, index - 1, total);
          const resume = fs.existsSync(runDirFor(runDir).configFile);
          if (!resume) removeUnstartedRunDir(runDir);
          o.log.info(`${label}: ${resume ? 'resuming' : 'starting'}`);
          o.onPhase?.({ phase: 'pretrain', id: config.runId, state: 'start', detail: `member ${index}/${total} ${place}: ${resume ? 'resuming' : 'starting'}` });
          const run = resume ? runDirFor(runDir) : createRunDir(config);
          const runConfig: Config = resume ? resolveConfig(openRunDir(runDir).storedConfig) : config;
          const log = createLogger(config.runId, run.logFile, { console: o.console });
          const progress = o.memberProgress?.(run.id, run.logFile) ?? createProgress(run.id);
          const member = new PretrainRun({ config: runConfig, run, driver: o.driver, log, progress, signal: o.signal, stop: o.stop });
          o.onMember?.(member);
          try {
            summary = await member.run();
          } finally {
            o.onMember?.(undefined);
          }
          if (!summary.completed) {
            o.log.warn(`${label}: stopped at step ${summary.steps}/${summary.totalSteps} (checkpointed)`);
            return undefined;
          }
          o.log.info(`${label}: done — validation loss ${summary.finalValLoss.toFixed(4)} after ${summary.steps} steps (${summary.flopsUsed.toExponential(3)} FLOPs, ${summary.secondsUsed.toFixed(1)} s)`);
          o.onPhase?.({ phase: 'pretrain', id: config.runId, state: 'done', done: summary.steps, total: summary.totalSteps, detail: `validation loss ${summary.finalValLoss.toFixed(4)} after ${summary.steps} steps` });
        }
        results.push({
          sizeId: size.id,
          budgetId: budget.id,
          ...(seed !== undefined ? { seed } : {}),
          runDir,
          ...memberParameters(config),
          steps: summary.steps,
          flops: summary.flopsUsed,
          seconds: summary.secondsUsed,
          valLoss: summary.finalValLoss,
          ...(summary.bleu !== undefined ? { bleu: summary.bleu ?? NaN, bleuBeam: summary.bleuBeam ?? NaN } : {}),
          curve: readMetrics(runDirFor(runDir).metricsFile)
            .filter((r) => r.valLoss !== undefined)
            .map((r) => ({ step: r.step, flops: r.flops, seconds: r.seconds, valLoss: r.valLoss!, ...(r.bleu !== undefined ? { bleu: r.bleu, bleuBeam: r.bleuBeam } : {}) })),
        });
      }
    }
  }
  return results;
}

/** A member's parameter counts: the model its task trains (the encoder–decoder for translation). */
function memberParameters(config: Config): { parameters: number; nonEmbeddingParameters: number } {
  if (config.task !== 'translation') return { parameters: parameterCount(config.model), nonEmbeddingParameters: nonEmbeddingParameterCount(config.model) };
  const layout = runLayout(config);
  return { parameters: layout.total, nonEmbeddingParameters: layout.specs.filter((s) => s.kind !== 'embedding').reduce((a, s) => a + s.size, 0) };
}

export function writePretrainingResults(sweepDir: string, sweep: SweepConfig, results: MemberResult[]): string[] {
  const json = path.join(sweepDir, 'pretraining.json');
  writeJsonAtomic(json, { sweep: { sizes: sweep.sizes, budgets: sweep.budgets, seeds: sweep.seeds, workers: sweep.workers }, members: results });
  const csv = path.join(sweepDir, 'pretraining.csv');
  const rows = ['size,budget,seed,layers,hidden,heads,ffn,parameters,non_embedding_parameters,steps,flops,seconds,val_loss'];
  for (const r of results) {
    const s = sweep.sizes.find((x) => x.id === r.sizeId)!;
    rows.push([r.sizeId, r.budgetId, r.seed ?? '', s.layers, s.hidden, s.heads, s.ffn, r.parameters, r.nonEmbeddingParameters, r.steps, r.flops, r.seconds.toFixed(2), r.valLoss.toFixed(5)].join(','));
  }
  writeFileAtomic(csv, `${rows.join('\n')}\n`);
  return [json, csv];
}

/** The members of a sweep whose pretraining is done (its pretraining.json). */
export function readPretrainingResults(sweepDir: string): MemberResult[] {
  const file = path.join(sweepDir, 'pretraining.json');
  if (!fs.existsSync(file)) throw new RunError(`${sweepDir} has no pretraining.json: run the pretraining first (ttc sweep)`);
  try {
    return (JSON.parse(fs.readFileSync(file, 'utf8')) as { members: MemberResult[] }).members;
  } catch (e) {
    throw new RunDirError(`${file} is not valid JSON (${oneLine(e)})`);
  }
}

/** The report's data: the pretraining part, plus the compression cells of the evaluation step. */
export function sweepReportData(runId: string, sweep: SweepConfig, results: MemberResult[], cells: Cell[] = [], finetunes: Finetune[] = []): ReportData {
  const seedOf = (r: MemberResult) => (r.seed !== undefined ? { seed: r.seed } : {});
  return {
    runId,
    createdAt: new Date().toISOString(),
    budgets: sweep.budgets.map((b) => ({ id: b.id, kind: b.kind, value: b.value })),
    sizes: sweep.sizes.map((s) => {
      const r = results.find((x) => x.sizeId === s.id)!;
      return { id: s.id, layers: s.layers, hidden: s.hidden, heads: s.heads, ffn: s.ffn, parameters: r.parameters, nonEmbeddingParameters: r.nonEmbeddingParameters };
    }),
    curves: results.map((r) => ({ sizeId: r.sizeId, budgetId: r.budgetId, ...seedOf(r), points: r.curve })),
    finals: results.map((r) => ({ sizeId: r.sizeId, budgetId: r.budgetId, ...seedOf(r), steps: r.steps, flops: r.flops, seconds: r.seconds, valLoss: r.valLoss })),
    cells,
    ...(finetunes.length ? { finetunes } : {}),
  };
}

/** One line per budget: the size with the lowest final validation loss (averaged over seeds), as the report ranks them. */
export function bestSizeLines(data: ReportData): string[] {
  return bestSizePerBudget(data).map((b) => {
    const size = data.sizes.find((s) => s.id === b.sizeId)!;
    const finals = data.finals.filter((f) => f.budgetId === b.budgetId && f.sizeId === b.sizeId);
    const steps = Math.round(finals.reduce((a, f) => a + f.steps, 0) / finals.length);
    return `budget ${b.budgetId}: best size ${b.sizeId} (${size.parameters.toLocaleString('en')} parameters), validation loss ${b.valLoss.mean.toFixed(4)}${b.valLoss.n > 1 ? ` (mean of ${b.valLoss.n} seeds)` : ''} after ${steps} steps`;
  });
}

/** The compression + evaluation step of a sweep whose pretraining is done (`ttc evaluate`), then its full report. */
export async function evaluateSweepDir(sweepDir: string, sweep: SweepConfig, o: EvaluationOptions): Promise<{ conclusion: string[]; cells: number; failures: string[] }> {
  const members = readPretrainingResults(sweepDir);
  if (sweep.base.task === 'translation') {
    // in this process, no workers needed (coordinator/translation.ts)
    const files = await compressTranslationSweep(sweepDir, sweep, members, o.log);
    return { conclusion: [`translation report: ${files.join(', ')}`], cells: members.length, failures: [] };
  }
  const { cells, failures, finetunes } = await evaluateSweep(sweepDir, sweep, members, o);
  const report = writeReport(sweepDir, sweepReportData(path.basename(sweepDir), sweep, members, cells, finetunes));
  return { conclusion: report.conclusion, cells: cells.length, failures };
}

/** Pretraining → results → the compression + evaluation step (when configured) → the report. */
export async function runSweep(sweep: SweepConfig, sweepDir: string, o: SweepRunOptions): Promise<SweepOutcome> {
  o.log.info(`${sweep.sizes.length} sizes × ${sweep.budgets.length} budgets${sweep.seeds.length ? ` × ${sweep.seeds.length} seeds` : ''} → ${sweepDir}`);
  const members = await pretrainMembers(sweep, sweepDir, o);
  if (!members) return { members: [], conclusion: [], best: [], cells: 0, failures: [], completed: false };
  writePretrainingResults(sweepDir, sweep, members);
  o.progress?.('pretraining done', members.length, members.length);
  if (sweep.base.task === 'translation') {
    // translation: BLEU after one-shot compression per member, and the translation report (coordinator/translation.ts)
    checkCancelled(o.signal, 'the translation compression step');
    o.progress?.('translation compression', 0, members.length);
    const files = await compressTranslationSweep(sweepDir, sweep, members, o.log);
    o.log.info(`translation report: ${files.join(', ')}`);
  }
  let cells: Cell[] = [];
  let failures: string[] = [];
  let finetunes: Finetune[] = [];
  if (sweep.evaluation) {
    checkCancelled(o.signal, 'the compression + evaluation step');
    o.log.info(`compression + evaluation step on ${o.driver.registry.size} workers`);
    ({ cells, failures, finetunes } = await evaluateSweep(sweepDir, sweep, members, { ...o, log: createLogger('evaluate', path.join(sweepDir, 'evaluate.log'), { console: o.console }), signal: anySignal(o.signal, o.stop) }));
  }
  o.onPhase?.({ phase: 'report', id: path.basename(sweepDir), state: 'start', detail: 'writing the report' });
  const data = sweepReportData(path.basename(sweepDir), sweep, members, cells, finetunes);
  const report = writeReport(sweepDir, data);
  o.onPhase?.({ phase: 'report', id: path.basename(sweepDir), state: 'done', detail: path.join(sweepDir, 'report.html') });
  return { members, conclusion: report.conclusion, best: bestSizeLines(data), cells: cells.length, failures, completed: true };
}
