/**
 * The bf16 gradient wire (dist.gradWire, with error feedback) against f32 on the default run: one
 * member of the default sweep (configs/sweep-local.json) pretrained twice with the same seed on
 * `ttc local` rings, side by side (both at once, so both see the same machine); prints the loss
 * curves' differences, the validation losses, and the step's communication time from metrics.jsonl.
 *
 *   node --import tsx bench/wire.ts [--size 1] [--budget 1] [--workers 2] [--json out.json]
 *   (npm run bench:wire -- …; size and budget are indices into the sweep's lists; ≈ 8 min on 2 cores)
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadSweepConfig, memberConfig } from '../coordinator/sweep-config.ts';
import { readMetrics, type MetricsRow } from '../core/run/metrics.ts';
import { benchArgs } from './lib/args.ts';
import { median } from './lib/median.ts';

const { opt, flag } = benchArgs();
if (flag('--help')) {
  console.log('usage: node --import tsx bench/wire.ts [--size 1] [--budget 1] [--workers 2] [--json out.json]');
  process.exit(0);
}
const sweep = loadSweepConfig('configs/sweep-local.json');
const size = sweep.sizes[Number(opt('--size') ?? 1)];
const budget = sweep.budgets[Number(opt('--budget') ?? 1)];
const workers = opt('--workers') ?? '2';
if (!size || !budget) throw new Error('--size / --budget: no such entry in configs/sweep-local.json');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ttc-bench-wire-'));

/** Runs one member on a `ttc local` ring with the given wire; resolves with its metrics rows. */
function run(wire: 'f32' | 'bf16'): Promise<MetricsRow[]> {
  const member = memberConfig(sweep, size!, budget!, path.join(dir, wire));
  const config = { ...member, dist: { ...member.dist, gradWire: wire } };
  const file = path.join(dir, `${wire}.json`);
  fs.writeFileSync(file, JSON.stringify(config));
  const child = spawn(process.execPath, ['bin/ttc.mjs', 'local', '--workers', workers, '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let tail = '';
  child.stderr.on('data', (d: Buffer) => { tail = (tail + d.toString()).slice(-4000); });
  return new Promise((resolve, reject) => child.on('exit', (code) => {
    if (code !== 0) return reject(new Error(`${wire} run exited ${code}:\n${tail}`));
    resolve(readMetrics(path.join(dir, wire, config.runId, 'metrics.jsonl')));
  }));
}

const memberId = `${size.id}_${budget.id}`;
process.stderr.write(`bench:wire: member ${memberId} on ${workers} workers, f32 and bf16 side by side (${dir})\n`);
const t0 = performance.now();
const [f32, bf16] = await Promise.all([run('f32'), run('bf16')]);
const train = (rows: MetricsRow[]) => rows.filter((r) => r.trainLoss !== undefined);
const a = train(f32), b = train(bf16);
const diffs = a.map((r, i) => Math.abs(r.trainLoss! - b[i]!.trainLoss!));
const vals = f32.filter((r) => r.valLoss !== undefined).map((r) => ({ step: r.step, f32: r.valLoss!, bf16: bf16.find((x) => x.step === r.step)?.valLoss ?? NaN }));
const timing = (rows: MetricsRow[]) => ({ stepMs: median(rows.slice(1).map((r, i) => (r.seconds - rows[i]!.seconds) * 1000)), commMs: median(rows.map((r) => r.commMs ?? NaN)), hiddenMs: median(rows.map((r) => r.commHiddenMs ?? NaN)) });
const lines = [
  `member ${memberId}, ${a.length} steps, ${workers} workers, same seed; ${((performance.now() - t0) / 1000).toFixed(0)} s`,
  `train loss, |bf16 − f32|: max ${Math.max(...diffs).toExponential(2)}, mean ${(diffs.reduce((s, x) => s + x, 0) / diffs.length).toExponential(2)}; final ${a.at(-1)!.trainLoss!.toFixed(4)} (f32) vs ${b.at(-1)!.trainLoss!.toFixed(4)} (bf16)`,
  `validation loss f32 / bf16: ${vals.map((v) => `${v.step}: ${v.f32.toFixed(4)} / ${v.bf16.toFixed(4)}`).join(', ')}`,
];
for (const [name, rows] of [['f32', a], ['bf16', b]] as const) {
  const x = timing(rows);
  lines.push(`${name}: median step ${x.stepMs.toFixed(0)} ms, communication ${x.commMs.toFixed(1)} ms of which hidden ${x.hiddenMs.toFixed(1)} ms`);
}
console.log(lines.join('\n'));
const json = opt('--json');
if (json) fs.writeFileSync(json, JSON.stringify({ member: memberId, workers, f32, bf16 }, null, 2));
fs.rmSync(dir, { recursive: true, force: true });
