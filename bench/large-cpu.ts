/**
 * A BERT-base-shaped model on CPU workers (issue 14, item 4): ttc's training step — as `ttc train`
 * runs it: the backend `auto` picks by the memory estimate, forward, backward, read-back, clip +
 * AdamW — and PyTorch's step of the same model (bench/torch_step.py) on the same cores, side by
 * side in one run, alternating one step each so both see the same load; then the evaluation of the
 * run's validation sequences. Prints medians and the ratio ttc / PyTorch.
 *
 *   npm run bench:large-cpu [-- --steps 3] [-- --threads 2] [-- --backend auto|cpu|wasm]
 *                           [-- --layers 12 --hidden 768 --heads 12 --ffn 3072 --seq 64 --vocab 4000 --batch 16]
 *                           [-- --python /usr/bin/python3] [-- --no-torch]
 *
 * PyTorch's child runs with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (this machine kind sets
 * them, and they slow OpenBLAS down: docs/kernels.md) and OMP_WAIT_POLICY=PASSIVE as bench/train.ts;
 * the BLAS it loaded, its kernel and thread count are printed.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import { createInterface } from 'node:readline';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { resolveConfig } from '../core/config/load.ts';
import { numMaskedPerSeq } from '../ml/data/masking.ts';
import { mlmStepFlops } from '../ml/flops.ts';
import { bytesText, estimateMemory, fits, hostMemoryLimit } from '../ml/model/memory.ts';
import type { ModelDims } from '../ml/model/spec.ts';
import { benchArgs } from './lib/args.ts';
import { median } from './lib/median.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { flag, opt } = benchArgs();
const num = (name: string, dflt: number) => Number(opt(name) ?? dflt);
const STEPS = num('--steps', 3);
const THREADS = num('--threads', os.availableParallelism());
const BATCH = num('--batch', 16);
const dims: ModelDims = {
  layers: num('--layers', 12),
  hidden: num('--hidden', 768),
  heads: num('--heads', 12),
  ffn: num('--ffn', 3072),
  seqLen: num('--seq', 64),
  vocab: num('--vocab', 4000),
};

type Msg = Record<string, unknown>;

/** A child speaking JSON lines: next() is its next line (after sending a command), or {error} if it dies. */
class Child {
  private waiting: ((m: Msg) => void)[] = [];
  private stderr = '';
  private readonly exited: Promise<string>;
  constructor(readonly proc: ChildProcessWithoutNullStreams, label: string) {
    createInterface({ input: proc.stdout }).on('line', (line) => {
      try {
        this.waiting.shift()?.(JSON.parse(line) as Msg);
      } catch {
        /* not ours: a library printing to stdout */
      }
    });
    proc.stderr.on('data', (d) => (this.stderr = (this.stderr + String(d)).slice(-4000)));
    proc.stdin.on('error', () => {});
    this.exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve(`${label} exited (${sig ?? code}): ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`)));
  }
  next(cmd?: string): Promise<Msg> {
    const p = new Promise<Msg>((resolve) => this.waiting.push(resolve));
    if (cmd !== undefined) this.proc.stdin.write(`${cmd}\n`);
    return Promise.race([p, this.exited.then((why) => ({ error: why }))]);
  }
  kill(): void {
    if (this.proc.exitCode === null) this.proc.kill();
  }
}

function findPython(): { python: string; version: string } | null {
  for (const python of opt('--python') ? [opt('--python')!] : ['python3', '/usr/bin/python3']) {
    const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 60_000 });
    if (r.status === 0) return { python, version: r.stdout.trim() };
  }
  return null;
}

function torchEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { OMP_WAIT_POLICY: 'PASSIVE', ...process.env, OMP_NUM_THREADS: String(THREADS), OPENBLAS_NUM_THREADS: String(THREADS) };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  return env;
}

/** Which BLAS PyTorch's process loads, OpenBLAS's kernel (core) and threads, under the child's environment. */
function blasInfo(python: string): string {
  const code = [
    'import torch, ctypes',
    'libs = sorted({l.split()[-1] for l in open("/proc/self/maps") if "blas" in l.lower()})',
    'core = "?"',
    'for p in libs:',
    '  try:',
    '    l = ctypes.CDLL(p); l.openblas_get_config.restype = ctypes.c_char_p',
    '    core = l.openblas_get_config().decode() + f", {l.openblas_get_num_threads()} threads"; break',
    '  except Exception: pass',
    'print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; BLAS {libs[0] if libs else None}: {core}")',
  ].join('\n');
  const r = spawnSync(python, ['-c', code], { encoding: 'utf8', env: torchEnv(), timeout: 60_000 });
  return r.status === 0 ? r.stdout.trim() : `unknown (${r.stderr.trim().split('\n').pop()})`;
}

/**
 * CPU seconds a process has used, all its threads (utime + stime of /proc/PID/stat, 10 ms ticks):
 * on a shared machine the wall time of a step depends on the load, its CPU time much less.
 */
function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // fields 14 and 15 of proc(5), counted after the name
  } catch {
    return NaN;
  }
}

const fmt = (ms: number) => (Number.isFinite(ms) ? Math.round(ms).toLocaleString('en') : '—');

async function main(): Promise<void> {
  const t0 = Date.now();
  const config = {
    backend: opt('--backend') ?? 'auto',
    threads: THREADS,
    seed: 1234,
    model: dims,
    train: { batchSize: BATCH },
    data: { maxValidationSequences: 16 },
    budget: { kind: 'steps', steps: 1 },
  };
  const resolved = resolveConfig(config, {});
  const masked = numMaskedPerSeq(dims.seqLen);
  const flops = mlmStepFlops(dims, BATCH, masked).training;
  const host = hostMemoryLimit();
  console.log(`# ttc large model on CPU — ${new Date().toISOString()}`);
  console.log(`# ${os.cpus()[0]?.model ?? 'CPU'}, ${os.availableParallelism()} cores, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; host memory ${bytesText(host.bytes)} (${host.source}); Node ${process.version}; ${THREADS} threads each`);
  console.log(`# model: layers ${dims.layers}, hidden ${dims.hidden}, heads ${dims.heads}, ffn ${dims.ffn}, vocab ${dims.vocab}; batch ${BATCH}×${dims.seqLen}; ${(flops / 1e9).toFixed(0)} GFLOP per training step`);
  for (const b of ['wasm', 'cpu'] as const) {
    const e = estimateMemory(dims, BATCH, masked, b);
    console.log(`# memory estimate on ${b}: tensors ${bytesText(e.tensorBytes)}, trainer state ${bytesText(e.trainerBytes)}, host ${bytesText(e.hostBytes)} → ${fits(e, host).ok ? 'fits' : 'does not fit'}: ${fits(e, host).why}`);
  }

  const ttc = new Child(spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/lib/large-child.ts'), JSON.stringify(resolved)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] }), 'ttc');
  const ready = await ttc.next();
  if (!ready.ready) throw new Error(`ttc child: ${String(ready.error ?? JSON.stringify(ready))}`);
  console.log(`# ttc: backend "${ready.backend}" (${ready.detail}); warm-up step ${fmt(ready.warmupMs as number)} ms, RSS ${ready.rssMB} MiB`);
  for (const l of ready.log as string[]) console.log(`#   ${l}`);

  let torch: Child | null = null;
  const py = flag('--no-torch') ? null : findPython();
  if (py) {
    console.log(`# PyTorch (OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset): ${blasInfo(py.python)}`);
    const args = [path.join(ROOT, 'bench/torch_step.py'), '--layers', String(dims.layers), '--hidden', String(dims.hidden), '--heads', String(dims.heads), '--ffn', String(dims.ffn)];
    args.push('--seq', String(dims.seqLen), '--vocab', String(dims.vocab), '--batch', String(BATCH), '--threads', String(THREADS), '--serve');
    torch = new Child(spawn(py.python, args, { cwd: ROOT, env: torchEnv(), stdio: ['pipe', 'pipe', 'pipe'] }), 'pytorch');
    const m = await torch.next();
    if (!m.ready) throw new Error(`PyTorch child: ${String(m.error ?? JSON.stringify(m))}`);
    console.log(`# PyTorch warm-up step ${fmt(m.warmupMs as number)} ms`);
  } else console.log(`# PyTorch: ${flag('--no-torch') ? 'skipped (--no-torch)' : 'not installed (apt install python3-torch libopenblas0-pthread)'}`);

  const ours: Msg[] = [];
  const theirs: number[] = [];
  const cpu = { ttc: [] as number[], torch: [] as number[] };
  for (let i = 0; i < STEPS; i++) {
    let c0 = cpuSeconds(ttc.proc.pid);
    const m = await ttc.next('step');
    if (typeof m.ms !== 'number') throw new Error(`ttc step: ${String(m.error)}`);
    cpu.ttc.push(cpuSeconds(ttc.proc.pid) - c0);
    ours.push(m);
    let line = `  step ${i + 1}: ttc ${fmt(m.ms)} ms (grad ${fmt(m.gradMs as number)}, apply ${fmt(m.applyMs as number)}, loss ${(m.loss as number).toFixed(3)}; ${cpu.ttc[i]!.toFixed(1)} CPU s)`;
    if (torch) {
      c0 = cpuSeconds(torch.proc.pid);
      const p = await torch.next('step');
      if (typeof p.ms !== 'number') throw new Error(`PyTorch step: ${String(p.error)}`);
      cpu.torch.push(cpuSeconds(torch.proc.pid) - c0);
      theirs.push(p.ms);
      line += `; PyTorch ${fmt(p.ms)} ms (${cpu.torch[i]!.toFixed(1)} CPU s)`;
    }
    process.stderr.write(`${line}\n`);
  }
  const ev = await ttc.next('eval');
  const end = await ttc.next('done');
  ttc.kill();
  if (torch) {
    await torch.next('done');
    torch.kill();
  }

  const ttcMs = median(ours.map((m) => m.ms as number));
  const torchMs = median(theirs);
  console.log(`\n| | ms/step (median of ${STEPS}) | min–max | GFLOP/s | CPU s/step (all threads) |`);
  console.log('|:--|--:|--:|--:|--:|');
  const row = (name: string, xs: number[], med: number, c: number[]) =>
    console.log(`| ${name} | ${fmt(med)} | ${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))} | ${(flops / (med / 1000) / 1e9).toFixed(1)} | ${median(c).toFixed(1)} |`);
  row(`ttc (${ready.backend})`, ours.map((m) => m.ms as number), ttcMs, cpu.ttc);
  if (theirs.length) row(`PyTorch ${py!.version}`, theirs, torchMs, cpu.torch);
  console.log(`\nttc step: grad (forward + backward + read-back) ${fmt(median(ours.map((m) => m.gradMs as number)))} ms, apply (clip + AdamW) ${fmt(median(ours.map((m) => m.applyMs as number)))} ms`);
  if (theirs.length) {
    console.log(`ratio ttc / PyTorch: ${(ttcMs / torchMs).toFixed(2)}× wall time (target ≤ 2×), ${(median(cpu.ttc) / median(cpu.torch)).toFixed(2)}× CPU time`);
    console.log(`  (load average now ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}: on a shared machine the CPU-time ratio is the steadier of the two)`);
  }
  console.log(`evaluation: ${ev.sequences} validation sequences in ${fmt(ev.ms as number)} ms (loss ${(ev.loss as number)?.toFixed(3)})`);
  console.log(`ttc process: peak RSS ${end.peakRssMB} MiB, tensors left ${end.numTensors}; total ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

await main();
