/**
 * `ttc evaluate --sweep runs/<id>`: the distributed compression + evaluation step of a sweep. It is
 * the coordinator of the workers (`ttc worker`, or `ttc local --evaluate`): they fine-tune every
 * pretrained member on the classification task data-parallel (a ring of all workers), then run a
 * job queue that evaluates every (member × compression cell), one cell per worker at a time.
 * Results are saved as they arrive (finetuned/*.safetensors, cells.jsonl), so a killed step
 * continues where it stopped; a job lost with its worker runs again elsewhere. At the end it writes
 * the report with the accuracy-vs-memory part filled.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { resolveSweepConfig, memberConfig, type SweepConfig } from '../../coordinator/sweep-config.ts';
import { loadSecret } from '../../wire/auth.ts';
import { writeFileAtomic } from '../../core/fs.ts';
import { tlsServerFromEnv } from '../../wire/net/index.ts';
import * as M from '../../protocol/messages.ts';
import { createLogger, type Logger } from '../../core/run/log.ts';
import { checkpointsDir, listCheckpointDirs, loadCheckpoint } from '../../ml/checkpoint/checkpoint.ts';
import { decodeSafetensors, encodeSafetensors } from '../../ml/checkpoint/safetensors.ts';
import { paramLayout } from '../../ml/model/spec.ts';
import { toReportCell } from '../../report/cells.ts';
import { cellLabel, compressionGrid, type CellResult, type CellSpec, type RoundResult } from '../../compression/eval/cells.ts';
import { deriveSeed } from '../../compression/eval/finetune.ts';
import { applyMask, globalMagnitudeMask, iterativeSchedule } from '../../compression/index.ts';
import { NUM_CLASSES } from '../../ml/data/classification.ts';
import { writeReport } from '../../report/write.ts';
import type { Cell } from '../../report/types.ts';
import { WorkerRegistry } from '../../coordinator/registry.ts';
import { runJobs, type JobRequest } from '../../coordinator/jobs.ts';
import { pretrainingReportData, type MemberResult } from './sweep.ts';
import { finetuneDistributed } from '../../coordinator/finetune.ts';
import { UsageError } from '../../core/errors.ts';

/** How long `ttc evaluate` waits for the expected workers before it starts with fewer. */
const EXPECT_WORKERS_SECONDS = 30;

export const evaluateUsage = `ttc evaluate --sweep runs/<id> [--host H] [--port P] [--workers N]

The compression + evaluation step of a sweep whose pretraining is done: fine-tunes every member,
evaluates every compression cell on the connected workers (ttc worker), writes cells.jsonl and the
report. Prints "TTC_COORDINATOR_URL=ws://host:port" once listening. Rerun to continue after a crash.
Before the first fine-tuning it waits up to ${EXPECT_WORKERS_SECONDS} s for N workers (default: the sweep's "workers"), so
that one data-parallel ring takes them all, then goes on with those connected (at least 1).`;


interface CellRecord {
  key: string;
  sizeId: string;
  budgetId: string;
  /** the member's training seed (sweeps with `seeds`) */
  seed?: number;
  result: CellResult;
}

const cellKey = (member: string, spec: CellSpec) => `${member}|${spec.method}|${cellLabel(spec)}`;

function readCells(file: string): Map<string, CellRecord> {
  const out = new Map<string, CellRecord>();
  if (!fs.existsSync(file)) return out;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line) as CellRecord;
      out.set(r.key, r);
    } catch {
      // a line cut short by a crash: that cell runs again
    }
  }
  return out;
}

/** Where the evaluation step is: a stage name and how much of it is done (for status views). */
export type EvaluationProgress = (stage: string, done: number, total: number) => void;

export async function evaluateSweep(sweepDir: string, sweep: SweepConfig, reg: WorkerRegistry, log: Logger, progress: EvaluationProgress = () => {}): Promise<{ cells: Cell[]; failures: string[] }> {
  const evaluation = sweep.evaluation;
  if (!evaluation) throw new Error(`${sweepDir}: the sweep config has no "evaluation" section`);
  const pre = path.join(sweepDir, 'pretraining.json');
  if (!fs.existsSync(pre)) throw new Error(`${sweepDir} has no pretraining.json: run the pretraining first (ttc sweep)`);
  const members = (JSON.parse(fs.readFileSync(pre, 'utf8')) as { members: MemberResult[] }).members;
  const grid = compressionGrid(evaluation.compression);
  const ftDir = path.join(sweepDir, 'finetuned');
  fs.mkdirSync(ftDir, { recursive: true });
  const cellsFile = path.join(sweepDir, 'cells.jsonl');
  const seed = sweep.base.seed;
  const selection = { maxTrain: evaluation.maxTrain, maxDev: evaluation.maxDev, maxTest: evaluation.maxTest };
  const jobOpts = { timeoutMs: 3_600_000, maxAttempts: 3, minWorkers: 1, waitForWorkersSeconds: sweep.base.dist.waitForWorkersSeconds };
  const failures: string[] = [];

  const memberInfo = members.map((m) => {
    const size = sweep.sizes.find((s) => s.id === m.sizeId)!;
    const budget = sweep.budgets.find((b) => b.id === m.budgetId)!;
    const config = memberConfig(sweep, size, budget, path.dirname(m.runDir), m.seed);
    const layout = paramLayout(config.model);
    const last = listCheckpointDirs(checkpointsDir(m.runDir)).at(-1);
    if (!last) throw new Error(`member ${config.runId} has no checkpoint in ${m.runDir}`);
    // A repeated member fine-tunes with its own seed too (head initialisation, batch order); the classification split stays.
    const ftSeed = m.seed ?? seed;
    return { m, config, id: config.runId, ftSeed, pretrained: loadCheckpoint(last, layout).weights, ftFile: path.join(ftDir, `${config.runId}.safetensors`) };
  });

  // Phase 1: fine-tune every member, data-parallel on all connected workers.
  const todo = memberInfo.filter((x) => !fs.existsSync(x.ftFile));
  log.info(`fine-tuning ${todo.length} member(s) (${memberInfo.length - todo.length} already done)`);
  let finetuned = memberInfo.length - todo.length;
  for (const x of todo) {
    progress(`fine-tuning ${x.id}`, finetuned++, memberInfo.length);
    const r = await finetuneDistributed(reg, { config: x.config, pretrained: x.pretrained, classificationSeed: seed, selection, opts: { ...evaluation.finetune, seed: x.ftSeed }, label: x.id, timeoutMs: sweep.base.dist.stepTimeoutSeconds * 1000, waitForWorkersSeconds: jobOpts.waitForWorkersSeconds }, log);
    writeFileAtomic(x.ftFile, encodeSafetensors({ weights: { dtype: 'F32', shape: [r.weights.length], data: r.weights } }, { trainLoss: String(r.trainLoss), devAccuracy: String(r.devAccuracy), workers: String(r.workers) }));
    log.info(`fine-tuned ${x.id} on ${r.workers} worker(s): dev accuracy ${(100 * r.devAccuracy).toFixed(1)}%, train loss ${r.trainLoss.toFixed(4)}`);
  }

  // Phase 2: every (member × cell) not yet in cells.jsonl.
  const done = readCells(cellsFile);
  const cellJobs: JobRequest[] = [];
  for (const x of memberInfo) {
    if (!fs.existsSync(x.ftFile)) continue;
    const finetuned = decodeSafetensors(fs.readFileSync(x.ftFile), x.ftFile).tensors.weights.data as Float32Array;
    for (const spec of grid) {
      const key = cellKey(x.id, spec);
      if (done.has(key)) continue;
      const jobSpec = { config: x.config, classificationSeed: seed, eval: selection, cell: spec, seed: x.ftSeed, finetune: evaluation.finetune };
      if (spec.method !== 'prune-iterative') {
        cellJobs.push({ id: `cell/${key}`, kind: 'cell', spec: jobSpec, inputs: { pretrained: x.pretrained, finetuned } });
        continue;
      }
      // Iterative pruning: prune here (a pure function of the weights), fine-tune each round
      // data-parallel with the mask held, then measure the result as a job.
      const clsLayout = paramLayout(x.config.model, { kind: 'classifier', numClasses: NUM_CLASSES });
      const trained = Float32Array.from(finetuned);
      let mask: Uint8Array | undefined;
      const rounds: RoundResult[] = [];
      const targets = iterativeSchedule(spec.sparsity!, spec.rounds!);
      let current: Float32Array = trained;
      for (let r = 0; r < targets.length; r++) {
        progress(`iterative pruning ${key}, round ${r + 1}/${targets.length}`, r, targets.length);
        mask = globalMagnitudeMask(current, clsLayout, targets[r], { embeddings: spec.embeddings, previousMask: mask });
        applyMask(current, mask);
        const ft = await finetuneDistributed(reg, { config: x.config, initial: current, mask, classificationSeed: seed, selection, opts: { ...evaluation.finetune, steps: spec.stepsPerRound!, seed: deriveSeed(x.ftSeed, 100 + r) }, label: `${key}/round-${r + 1}`, timeoutMs: sweep.base.dist.stepTimeoutSeconds * 1000, waitForWorkersSeconds: jobOpts.waitForWorkersSeconds }, log);
        current = ft.weights;
        rounds.push({ round: r + 1, sparsity: targets[r], trainLoss: ft.trainLoss, devAccuracy: ft.devAccuracy });
      }
      log.info(`iterative pruning ${key}: ${rounds.map((r) => `round ${r.round} sparsity ${r.sparsity.toFixed(3)} dev ${(100 * r.devAccuracy).toFixed(1)}%`).join(', ')}`);
      cellJobs.push({ id: `cell/${key}`, kind: 'cell-trained', spec: { ...jobSpec, rounds }, inputs: { pretrained: x.pretrained, trained: current, mask: Float32Array.from(mask!) } });
    }
  }
  log.info(`evaluating ${cellJobs.length} compression cell(s) (${done.size} already done) on ${reg.size} worker(s)`);
  const cellsTotal = done.size + cellJobs.length;
  progress('compression cells', done.size, cellsTotal);
  await runJobs(reg, cellJobs, {
    ...jobOpts,
    onOutcome: (o) => {
      if (!o.ok) return void failures.push(`${o.id}: ${o.errors.join('; ')}`);
      const key = o.id.slice('cell/'.length);
      const x = memberInfo.find((i) => key.startsWith(`${i.id}|`))!;
      const rec: CellRecord = { key, sizeId: x.m.sizeId, budgetId: x.m.budgetId, ...(x.m.seed !== undefined ? { seed: x.m.seed } : {}), result: o.result as CellResult };
      fs.appendFileSync(cellsFile, `${JSON.stringify(rec)}\n`);
      done.set(key, rec);
      progress('compression cells', done.size, cellsTotal);
    },
  }, log);
  const cells = [...readCells(cellsFile).values()].map((r) => toReportCell(r.result, { sizeId: r.sizeId, budgetId: r.budgetId, ...(r.seed !== undefined ? { seed: r.seed } : {}) }));
  return { cells, failures };
}

export async function evaluateCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { sweep: { type: 'string' }, host: { type: 'string', default: process.env.TTC_HOST ?? '127.0.0.1' }, port: { type: 'string', default: process.env.TTC_PORT ?? '7070' }, workers: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(evaluateUsage);
    return 0;
  }
  if (!values.sweep) throw new UsageError(`--sweep is required\n\n${evaluateUsage}`);
  const sweepDir = values.sweep;
  const stored = path.join(sweepDir, 'sweep.json');
  if (!fs.existsSync(stored)) throw new Error(`${sweepDir} is not a sweep directory (no sweep.json)`);
  const sweep = resolveSweepConfig(JSON.parse(fs.readFileSync(stored, 'utf8')), stored);
  const expected = values.workers === undefined ? sweep.workers : Number(values.workers);
  if (!Number.isInteger(expected) || expected < 1) throw new UsageError(`--workers: expected a positive integer, got "${values.workers}"`);
  const log = createLogger('evaluate', path.join(sweepDir, 'evaluate.log'));
  let phase = 'starting';
  const reg: WorkerRegistry = new WorkerRegistry({ secret: loadSecret(), host: values.host!, port: Number(values.port), tls: tlsServerFromEnv(), name: path.basename(sweepDir), log, status: (): Record<string, unknown> => ({ runId: path.basename(sweepDir), phase, workers: [...reg.workers.values()].map((w) => ({ name: w.name, remote: w.conn.remote })) }), phase: () => phase });
  const url = await reg.listen();
  console.log(`TTC_COORDINATOR_URL=${url}`);
  try {
    phase = 'waiting for workers';
    const got = await reg.waitUpTo(expected, EXPECT_WORKERS_SECONDS);
    if (got < expected) log.warn(`${got} of the ${expected} expected workers connected within ${EXPECT_WORKERS_SECONDS} s: going on with those`);
    phase = 'evaluating';
    const { cells, failures } = await evaluateSweep(sweepDir, sweep, reg, log);
    phase = 'done';
    reg.quiet = true;
    reg.broadcast([...reg.workers.values()], M.Stop, () => ({ reason: 'evaluation complete', ok: true }));
    const members = (JSON.parse(fs.readFileSync(path.join(sweepDir, 'pretraining.json'), 'utf8')) as { members: MemberResult[] }).members;
    const report = writeReport(sweepDir, { ...pretrainingReportData(path.basename(sweepDir), sweep, members), cells });
    for (const line of report.conclusion) console.log(line);
    console.log(`report: ${path.join(sweepDir, 'report.html')} (${cells.length} cells; also report.md, results.csv, plots/)`);
    if (failures.length > 0) {
      console.error(`ttc evaluate: ${failures.length} job(s) failed:\n  ${failures.join('\n  ')}\nrerun \`ttc evaluate --sweep ${sweepDir}\` to retry them`);
      return 1;
    }
    return 0;
  } finally {
    await reg.close();
  }
}
