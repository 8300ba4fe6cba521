/**
 * `ttc sweep --config configs/sweep.json`: trains every (size × budget) member of a sweep, each a
 * real distributed run (`ttc local`: a coordinator + N worker processes) under its own budget with
 * its own schedule, one after the other. Resumable: `ttc sweep --resume runs/<id>` skips completed
 * members and continues an interrupted one from its checkpoint. Writes runs/<id>/pretraining.json
 * (finals and curves of every member) and pretraining.csv.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { childOfThisProcess } from '../../core/run/parent-watch.ts';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadSweepConfig, memberConfig, memberSeeds, resolveSweepConfig, type SweepConfig } from '../../coordinator/sweep-config.ts';
import { readMetrics } from '../../core/run/metrics.ts';
import { nonEmbeddingParameterCount, parameterCount } from '../../ml/model/spec.ts';
import { writeReport } from '../../report/write.ts';
import type { ReportData } from '../../report/types.ts';
import type { Config } from '../../core/config/schema.ts';
import { timestamp } from '../../core/run/rundir.ts';
import { UsageError } from '../../core/errors.ts';

export const sweepUsage = `ttc sweep --config <sweep.json> [--workers N]
ttc sweep --resume <runs/ID>

Trains every (size × budget) member of the sweep data-parallel on N local worker processes, each
with its LR schedule fitted to its budget, and writes runs/<id>/pretraining.{json,csv}.
A killed sweep continues where it stopped with --resume.`;

const TTC = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'ttc.mjs');

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
  curve: Array<{ step: number; flops: number; seconds: number; valLoss: number }>;
}

function runLocal(args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [TTC, 'local', ...args], childOfThisProcess(process.env, 'inherit'));
    const forward = () => child.kill('SIGTERM');
    process.once('SIGINT', forward);
    process.once('SIGTERM', forward);
    child.once('exit', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      resolve(code ?? (signal ? 130 : 1));
    });
  });
}

export function readSummary(runDir: string): { completed: boolean; steps: number; flopsUsed: number; secondsUsed: number; finalValLoss: number } | undefined {
  const f = path.join(runDir, 'summary.json');
  if (!fs.existsSync(f)) return undefined;
  try {
    return JSON.parse(fs.readFileSync(f, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Trains one member to completion (throws otherwise); `resume` when its run directory exists. */
export type MemberTrainer = (m: { config: Config; membersDir: string; runDir: string; resume: boolean; label: string; index: number; total: number }) => Promise<void>;

/** `ttc sweep`'s way: a `ttc local` process tree (a coordinator + sweep.workers worker processes) per member. */
export function localMemberTrainer(sweep: SweepConfig, sweepDir: string): MemberTrainer {
  return async ({ config, membersDir, runDir, resume, label }) => {
    const args = resume ? ['--resume', runDir] : ['--config', writeMemberConfig(membersDir, config)];
    const code = await runLocal(['--workers', String(sweep.workers), ...args]);
    if (code !== 0 || !readSummary(runDir)?.completed) throw new Error(`${label} did not complete (exit code ${code}); continue with: ttc sweep --resume ${sweepDir}`);
  };
}

export async function runSweep(sweep: SweepConfig, sweepDir: string, log: (line: string) => void, train: MemberTrainer = localMemberTrainer(sweep, sweepDir)): Promise<MemberResult[]> {
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
        const config = memberConfig(sweep, size, budget, membersDir, seed);
        const runDir = path.join(membersDir, config.runId);
        const label = `member ${index}/${total} ${config.runId} (${size.layers} layers, d=${size.hidden}; budget ${budget.kind} ${budget.value})`;
        let summary = readSummary(runDir);
        if (summary?.completed) {
          log(`${label}: already complete, skipped`);
        } else {
          const resume = fs.existsSync(path.join(runDir, 'config.json'));
          // a start killed between creating the directory and writing its config left it empty
          if (!resume && fs.existsSync(runDir) && fs.readdirSync(runDir).length === 0) fs.rmdirSync(runDir);
          log(`${label}: ${resume ? 'resuming' : 'starting'}`);
          await train({ config, membersDir, runDir, resume, label, index, total });
          summary = readSummary(runDir);
          if (!summary?.completed) throw new Error(`${label} did not complete: no completed summary.json in ${runDir}`);
        }
        const dims = { ...config.model };
        results.push({
          sizeId: size.id,
          budgetId: budget.id,
          ...(seed !== undefined ? { seed } : {}),
          runDir,
          parameters: parameterCount(dims),
          nonEmbeddingParameters: nonEmbeddingParameterCount(dims),
          steps: summary!.steps,
          flops: summary!.flopsUsed,
          seconds: summary!.secondsUsed,
          valLoss: summary!.finalValLoss,
          curve: readMetrics(path.join(runDir, 'metrics.jsonl'))
            .filter((r) => r.valLoss !== undefined)
            .map((r) => ({ step: r.step, flops: r.flops, seconds: r.seconds, valLoss: r.valLoss! })),
        });
      }
    }
  }
  return results;
}

function writeMemberConfig(dir: string, config: object & { runId: string }): string {
  const file = path.join(dir, `${config.runId}.config.json`);
  fs.writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
  return file;
}

export function writePretrainingResults(sweepDir: string, sweep: SweepConfig, results: MemberResult[]): string[] {
  const json = path.join(sweepDir, 'pretraining.json');
  fs.writeFileSync(json, `${JSON.stringify({ sweep: { sizes: sweep.sizes, budgets: sweep.budgets, seeds: sweep.seeds, workers: sweep.workers }, members: results }, null, 2)}\n`);
  const csv = path.join(sweepDir, 'pretraining.csv');
  const rows = ['size,budget,seed,layers,hidden,heads,ffn,parameters,non_embedding_parameters,steps,flops,seconds,val_loss'];
  for (const r of results) {
    const s = sweep.sizes.find((x) => x.id === r.sizeId)!;
    rows.push([r.sizeId, r.budgetId, r.seed ?? '', s.layers, s.hidden, s.heads, s.ffn, r.parameters, r.nonEmbeddingParameters, r.steps, r.flops, r.seconds.toFixed(2), r.valLoss.toFixed(5)].join(','));
  }
  fs.writeFileSync(csv, `${rows.join('\n')}\n`);
  return [json, csv];
}

/** The report's view of the pretraining part (compression cells are added by the evaluation step). */
export function pretrainingReportData(runId: string, sweep: SweepConfig, results: MemberResult[]): ReportData {
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
    cells: [],
  };
}

const seedOf = (r: MemberResult) => (r.seed !== undefined ? { seed: r.seed } : {});

/** Best size per budget: the lowest final validation loss, averaged over seeds (the IsoFLOP answer). */
export function bestSizePerBudget(results: MemberResult[]): Map<string, MemberResult & { seeds: number }> {
  const groups = new Map<string, MemberResult[]>();
  for (const r of results) {
    const k = `${r.budgetId}\u0000${r.sizeId}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const best = new Map<string, MemberResult & { seeds: number }>();
  for (const rs of groups.values()) {
    const mean = (f: (r: MemberResult) => number) => rs.reduce((a, r) => a + f(r), 0) / rs.length;
    const m = { ...rs[0], seeds: rs.length, valLoss: mean((r) => r.valLoss), steps: Math.round(mean((r) => r.steps)) };
    const b = best.get(m.budgetId);
    if (!b || m.valLoss < b.valLoss) best.set(m.budgetId, m);
  }
  return best;
}

export async function sweepCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' }, resume: { type: 'string' }, workers: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(sweepUsage);
    return 0;
  }
  let sweep: SweepConfig;
  let sweepDir: string;
  if (values.resume) {
    sweepDir = values.resume;
    const stored = path.join(sweepDir, 'sweep.json');
    if (!fs.existsSync(stored)) throw new Error(`${sweepDir} is not a sweep directory (no sweep.json)`);
    sweep = resolveSweepConfig(JSON.parse(fs.readFileSync(stored, 'utf8')), stored);
  } else {
    if (!values.config) throw new UsageError(`--config or --resume is required\n\n${sweepUsage}`);
    sweep = loadSweepConfig(values.config);
    const id = sweep.sweepId || `${path.basename(values.config, '.json')}-${timestamp()}`;
    sweepDir = path.join(sweep.outputDir, id);
    if (fs.existsSync(sweepDir)) throw new Error(`${sweepDir} exists: continue it with \`ttc sweep --resume ${sweepDir}\``);
    fs.mkdirSync(sweepDir, { recursive: true });
    fs.writeFileSync(path.join(sweepDir, 'sweep.json'), `${JSON.stringify({ ...sweep, base: sweep.base }, null, 2)}\n`);
  }
  if (values.workers) sweep.workers = Number(values.workers);
  const log = (l: string) => process.stderr.write(`ttc sweep: ${l}\n`);
  log(`${sweep.sizes.length} sizes × ${sweep.budgets.length} budgets → ${sweepDir}`);
  const results = await runSweep(sweep, sweepDir, log);
  const files = writePretrainingResults(sweepDir, sweep, results);
  if (sweep.evaluation) {
    // The compression + evaluation step writes the full report (with every cell) itself.
    log(`compression + evaluation step on ${sweep.workers} workers`);
    const code = await runLocal(['--workers', String(sweep.workers), '--evaluate', sweepDir]);
    if (code !== 0) throw new Error(`the evaluation step failed (exit code ${code}); continue with: ttc sweep --resume ${sweepDir}`);
  } else {
    const report = writeReport(sweepDir, pretrainingReportData(path.basename(sweepDir), sweep, results));
    for (const line of report.conclusion) console.log(line);
  }
  files.push(path.join(sweepDir, 'report.html'), path.join(sweepDir, 'report.md'), path.join(sweepDir, 'results.csv'));
  console.log(`sweep ${path.basename(sweepDir)}: ${results.length} members trained`);
  for (const [budgetId, r] of bestSizePerBudget(results)) {
    console.log(`budget ${budgetId}: best size ${r.sizeId} (${r.parameters.toLocaleString('en')} parameters), validation loss ${r.valLoss.toFixed(4)}${r.seeds > 1 ? ` (mean of ${r.seeds} seeds)` : ''} after ${r.steps} steps`);
  }
  console.log(`results: ${files.join(', ')}`);
  return 0;
}
