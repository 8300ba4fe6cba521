/**
 * Full MLM training steps (MlmTrainer.computeGradients on a real masked batch + trainer.apply)
 * for 3 model sizes on every available backend path, side by side, plus PyTorch where installed.
 *
 *   npm run bench:train [-- --quick] [-- --sizes S,M] [-- --threads N] [-- --profile]
 *
 * --quick     sizes S and M only, fewer steps
 * --sizes     a subset of S, M, L
 * --threads   CPU threads for the fast kernels and PyTorch (default: all cores)
 * --profile   after timing, one step per tfjs cell under tf.profile: time per kernel
 * --python    the interpreter for the PyTorch row (default: python3, then /usr/bin/python3)
 * --paths     a subset of the ttc cells by name, comma-separated (e.g. "wasm + fast,wasm + fast unfused")
 * --no-torch  skip the PyTorch row
 *
 * Each (backend, size) cell runs in its own child process (bench/lib/train-child.ts: backends and
 * kernel registrations are process-global). All cells of one size are started one after another
 * (each loads the cached dataset, builds the trainer and runs one warm-up step), then stepped
 * ROUND-ROBIN, one step per cell per round, so every backend is timed over the same stretch of a
 * noisy shared machine; medians are reported. A cell stops once it has ≥ minSteps steps and has
 * run ≥ minSeconds (or maxSteps), or after maxSeconds of timed steps whatever its count: slow
 * plain-cpu cells may stop after 1 timed step and are marked `*`.
 * PyTorch (bench/torch_step.py) joins the round-robin the same way when `import torch` works.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { BackendChoice } from '../ml/backend.ts';
import { prepareDataset } from '../ml/data/dataset.ts';
import { numMaskedPerSeq } from '../ml/data/masking.ts';
import { mlmStepFlops } from '../ml/flops.ts';
import { parameterCount, type ModelDims } from '../ml/model/spec.ts';
import type { ChildArgs, ChildResult, StepResult } from './lib/train-child.ts';
import { printTable } from './lib/table.ts';
import { benchArgs } from './lib/args.ts';
import { median } from './lib/median.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { flag, opt } = benchArgs();
const QUICK = flag('--quick');
const PROFILE = flag('--profile');
const THREADS = Number(opt('--threads') ?? os.availableParallelism());
const B = 16;
const T = 64;
const V = 8000;
const SEED = 1234;
const CACHE_DIR = path.join(ROOT, '.cache');
const VALIDATION_FRACTION = 0.02;
/** stopping rule per cell (timed steps, warm-up excluded) */
const RULE = QUICK ? { minSteps: 2, maxSteps: 4, minSeconds: 2, maxSeconds: 8 } : { minSteps: 3, maxSteps: 10, minSeconds: 6, maxSeconds: 20 };

const SIZES: Record<string, ModelDims> = {
  S: { layers: 2, hidden: 64, heads: 2, ffn: 256, seqLen: T, vocab: V },
  M: { layers: 4, hidden: 128, heads: 2, ffn: 512, seqLen: T, vocab: V },
  L: { layers: 4, hidden: 256, heads: 4, ffn: 1024, seqLen: T, vocab: V },
};
/** PyTorch 1.13 CPU, 2 threads, same machine kind (shared/STACK-NOTES.md), for when torch is absent here */
const TORCH_NOTES_MS: Record<string, number> = { S: 118, M: 250, L: 610 };

interface Path {
  name: string;
  backend: Exclude<BackendChoice, 'auto'>;
  fast: boolean;
  /** fused ops (ml/kernels/fused.ts); default on */
  fused?: boolean;
}
const CPU_PATHS: Path[] = [
  { name: 'wasm + fast', backend: 'wasm', fast: true },
  // the same without the fused kernels (tfjs compositions): what the fused ops buy
  { name: 'wasm + fast unfused', backend: 'wasm', fast: true, fused: false },
  { name: 'cpu + fast', backend: 'cpu', fast: true },
  { name: 'wasm', backend: 'wasm', fast: false },
  { name: 'cpu', backend: 'cpu', fast: false },
];
const OPTIONAL_PATHS: Path[] = [
  { name: 'webgpu', backend: 'webgpu', fast: false },
  { name: 'tensorflow', backend: 'tensorflow', fast: false },
];

// ---------- child processes speaking JSON lines ----------

type Msg = Record<string, unknown>;

class Child {
  private waiting: ((m: Msg) => void)[] = [];
  private stderr = '';
  private exited: Promise<string>;
  private constructor(readonly proc: ChildProcessWithoutNullStreams, readonly label: string) {
    createInterface({ input: proc.stdout }).on('line', (line) => {
      let m: Msg;
      try {
        m = JSON.parse(line) as Msg;
      } catch {
        return; // not ours (a library printing to stdout)
      }
      this.waiting.shift()?.(m);
    });
    proc.stderr.on('data', (d) => (this.stderr = (this.stderr + String(d)).slice(-4000)));
    proc.stdin.on('error', () => {}); // EPIPE when a child died: reported through `exited`
    this.exited = new Promise((resolve) => {
      proc.on('error', (e) => resolve(e.message));
      proc.on('exit', (code, sig) => resolve(`${label} exited (${sig ?? code}): ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`));
    });
  }

  static start(label: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): Child {
    return new Child(spawn(cmd, args, { cwd: ROOT, env: env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] }), label);
  }

  /** The next JSON line (after sending `cmd`, if given); a message {error} if the process dies first. */
  async next(cmd?: string): Promise<Msg> {
    const p = new Promise<Msg>((resolve) => this.waiting.push(resolve));
    if (cmd !== undefined) this.proc.stdin.write(`${cmd}\n`);
    return Promise.race([p, this.exited.then((why) => ({ error: why }))]);
  }

  kill(): void {
    if (this.proc.exitCode === null) this.proc.kill();
  }
}

const nodeChild = (label: string, a: ChildArgs) => Child.start(label, process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/lib/train-child.ts'), JSON.stringify(a)]);

function childArgs(p: Path, dims: ModelDims, extra: Partial<ChildArgs> = {}): ChildArgs {
  return { backend: p.backend, fastKernels: p.fast, fused: p.fused !== false, threads: THREADS, dims, batch: B, seed: SEED, cacheDir: CACHE_DIR, validationFraction: VALIDATION_FRACTION, ...extra };
}

// ---------- PyTorch ----------

interface Torch {
  python: string;
  version: string;
}

function findTorch(): { torch: Torch | null; note: string } {
  const tried: string[] = [];
  // Debian's python3-torch lives under /usr/bin/python3, which a pyenv `python3` shadows
  const pythons = opt('--python') ? [opt('--python')!] : ['python3', '/usr/bin/python3'];
  for (const python of pythons) {
    const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 60_000 });
    if (r.status === 0) return { torch: { python, version: r.stdout.trim() }, note: '' };
    tried.push(`${python}: ${r.error ? r.error.message : (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`)}`);
  }
  return { torch: null, note: tried.join('; ') };
}

let torchBlasShown = false;

function torchChild(t: Torch, dims: ModelDims): Child {
  // OMP_WAIT_POLICY=PASSIVE: with the default (spinning) OpenMP barriers, 2 threads on 2 shared cores
  // ran 4–10× slower whenever another process held a core (S: 444 ms vs 58 ms passive, 44 ms with 1
  // thread); passive matches the fast kernels' onnxruntime pool, which does not spin either.
  const env: NodeJS.ProcessEnv = { OMP_WAIT_POLICY: 'PASSIVE', ...process.env, OMP_NUM_THREADS: String(THREADS), OPENBLAS_NUM_THREADS: String(THREADS) };
  // (these two slow a current OpenBLAS down; see docs/kernels.md)
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const args = [path.join(ROOT, 'bench/torch_step.py'), '--layers', String(dims.layers), '--hidden', String(dims.hidden), '--heads', String(dims.heads), '--ffn', String(dims.ffn)];
  args.push('--seq', String(T), '--vocab', String(V), '--batch', String(B), '--threads', String(THREADS), '--serve');
  return Child.start('pytorch', t.python, args, env);
}

// ---------- one size: start cells, round-robin, collect ----------

interface Cell {
  name: string;
  child: Child | null;
  ready?: Msg;
  steps: StepResult[];
  spent: number;
  done: boolean;
  error?: string;
  result?: ChildResult;
  profile?: Record<string, number>;
  profileMs?: number;
  profileApplyMs?: number;
  profileGradMs?: number;
}


function finished(c: Cell): boolean {
  const n = c.steps.length;
  if (n === 0) return false;
  if (c.spent >= RULE.maxSeconds * 1000) return true;
  return n >= RULE.minSteps && (c.spent >= RULE.minSeconds * 1000 || n >= RULE.maxSteps);
}

function progress(s: string): void {
  process.stderr.write(`  ${s}\n`);
}

async function runSize(key: string, dims: ModelDims, paths: Path[], torch: Torch | null): Promise<Cell[]> {
  const cells: Cell[] = [];
  // start one at a time: each child's startup and warm-up step should not overlap another's
  for (const p of paths) {
    const child = nodeChild(p.name, childArgs(p, dims, { serve: true }));
    const cell: Cell = { name: p.name, child, steps: [], spent: 0, done: false };
    const m = await child.next();
    if (m.ready) {
      cell.ready = m;
      progress(`${key} ${p.name}: ready (warm-up ${(m.warmupMs as number).toFixed(0)} ms)`);
    } else {
      cell.error = String(m.skipped ?? m.error ?? JSON.stringify(m));
      cell.done = true;
      child.kill();
      cell.child = null;
      progress(`${key} ${p.name}: ${m.skipped ? 'skipped' : 'failed'}: ${cell.error}`);
    }
    cells.push(cell);
  }
  if (torch) {
    const child = torchChild(torch, dims);
    const cell: Cell = { name: `PyTorch ${torch.version}`, child, steps: [], spent: 0, done: false };
    const m = await child.next();
    if (m.ready) {
      cell.ready = m;
      progress(`${key} PyTorch: ready (warm-up ${(m.warmupMs as number).toFixed(0)} ms)`);
      if (!torchBlasShown) {
        torchBlasShown = true;
        console.log(`# PyTorch runtime: ${m.threads} threads (torch.get_num_threads()); BLAS: ${m.blas ?? 'unknown'}`);
      }
    } else {
      cell.error = String(m.error ?? JSON.stringify(m));
      cell.done = true;
      child.kill();
      cell.child = null;
      progress(`${key} PyTorch: failed: ${cell.error}`);
    }
    cells.push(cell);
  }

  for (let round = 1; cells.some((c) => !c.done); round++) {
    for (const c of cells) {
      if (c.done || !c.child) continue;
      const m = await c.child.next('step');
      if (typeof m.ms !== 'number') {
        c.error = String(m.error ?? JSON.stringify(m));
        c.done = true;
        progress(`${key} ${c.name}: failed: ${c.error}`);
        continue;
      }
      c.steps.push({ ms: m.ms, gradMs: (m.gradMs as number) ?? NaN, applyMs: (m.applyMs as number) ?? NaN, loss: m.loss as number });
      c.spent += m.ms;
      c.done = finished(c);
    }
    progress(`${key} round ${round}: ${cells.filter((c) => c.steps.length).map((c) => `${c.name} ${median(c.steps.map((s) => s.ms)).toFixed(0)} ms×${c.steps.length}`).join(', ')}`);
  }

  for (const c of cells) {
    if (!c.child) continue;
    if (PROFILE && !c.error && !c.name.startsWith('PyTorch')) {
      const m = await c.child.next('profile');
      if (m.profile) {
        c.profile = m.profile as Record<string, number>;
        c.profileMs = m.ms as number;
        c.profileApplyMs = m.applyMs as number;
        c.profileGradMs = m.gradMs as number;
      }
    }
    const m = await c.child.next('done');
    if (m.result) c.result = m.result as ChildResult;
    c.child.kill();
  }
  return cells;
}

// ---------- output ----------


const fmtMs = (ms: number) => (Number.isFinite(ms) ? (ms >= 100 ? Math.round(ms).toLocaleString('en') : ms.toFixed(1)) : '—');
const fmtNum = (x: number, digits = 0) => (Number.isFinite(x) ? x.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '—');
const fmtRatio = (x: number) => (Number.isFinite(x) ? `${x >= 10 ? x.toFixed(0) : x.toFixed(2)}×` : '—');

interface SizeResult {
  key: string;
  dims: ModelDims;
  params: number;
  flops: number;
  ms: Record<string, number>;
  starred: Record<string, boolean>;
}

function report(key: string, dims: ModelDims, cells: Cell[], torchAvailable: boolean): SizeResult {
  const params = parameterCount(dims);
  const flops = mlmStepFlops(dims, B, numMaskedPerSeq(T)).training;
  console.log(
    `\n## ${key}: layers ${dims.layers}, hidden ${dims.hidden}, heads ${dims.heads}, ffn ${dims.ffn}; B${B}×T${T}, V${V} — ` +
      `${params.toLocaleString('en')} parameters, ${(flops / 1e9).toFixed(2)} GFLOP per training step (analytic)`,
  );
  const rows: string[][] = [];
  const ms: Record<string, number> = {};
  const starred: Record<string, boolean> = {};
  const wasmMs = median(cells.find((c) => c.name === 'wasm')?.steps.map((s) => s.ms) ?? []);
  for (const c of cells) {
    if (c.steps.length === 0) {
      rows.push([c.name, c.error ? `skipped: ${c.error.slice(0, 90)}` : '—', '', '', '', '', '', '', '', '']);
      continue;
    }
    const times = c.steps.map((s) => s.ms);
    const med = median(times);
    const star = c.steps.length < RULE.minSteps;
    ms[c.name.startsWith('PyTorch') ? 'PyTorch' : c.name] = med;
    starred[c.name.startsWith('PyTorch') ? 'PyTorch' : c.name] = star;
    const p = (c.result?.params ?? (c.ready?.params as number | undefined)) ?? NaN;
    rows.push([
      c.name,
      `${fmtMs(med)}${star ? '*' : ''}`,
      `${fmtMs(Math.min(...times))}–${fmtMs(Math.max(...times))}`,
      String(c.steps.length),
      fmtNum((B * T) / (med / 1000)),
      fmtNum(flops / (med / 1000) / 1e9, 2),
      c.name.startsWith('PyTorch') ? '—' : `${fmtMs(median(c.steps.map((s) => s.gradMs)))} / ${fmtMs(median(c.steps.map((s) => s.applyMs)))}`,
      fmtRatio(wasmMs / med),
      p === params ? p.toLocaleString('en') : `${fmtNum(p)} (≠)`,
      fmtMs((c.ready?.warmupMs as number | undefined) ?? NaN),
    ]);
  }
  if (!torchAvailable) rows.push(['PyTorch: not installed (skipped)', '', '', '', '', '', '', '', '', '']);
  printTable(['backend', 'ms/step', 'min–max', 'steps', 'tokens/s', 'GFLOP/s', 'grad / apply ms', 'vs wasm', 'params', 'warm-up ms'], rows);

  if (PROFILE) {
    for (const c of cells) {
      if (!c.profile) continue;
      const total = Object.values(c.profile).reduce((a, b) => a + b, 0);
      const top = Object.entries(c.profile).sort((a, b) => b[1] - a[1]);
      const shown = top.slice(0, 8).map(([k, v]) => `${k} ${((v / total) * 100).toFixed(0)}%`);
      const matmul = top.filter(([k]) => /MatMul/.test(k)).reduce((a, [, v]) => a + v, 0);
      console.log(
        `  profile ${c.name}: step ${fmtMs(c.profileMs!)} ms under tf.profile = gradients ${fmtMs(c.profileGradMs!)} (kernels ${fmtMs(total)}, matmul ${((matmul / total) * 100).toFixed(0)}% of it) ` +
          `+ apply ${fmtMs(c.profileApplyMs!)} (AdamW + weight upload); top kernels: ${shown.join(', ')}`,
      );
    }
  }
  return { key, dims, params, flops, ms, starred };
}

// ---------- main ----------

async function main(): Promise<void> {
  const sizeKeys = (opt('--sizes') ?? (QUICK ? 'S,M' : 'S,M,L')).split(',').map((s) => s.trim().toUpperCase()).filter(Boolean);
  for (const k of sizeKeys) if (!SIZES[k]) throw new Error(`--sizes: unknown size "${k}" (use S, M, L)`);

  const t0 = Date.now();
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(`# ttc MLM training step benchmark — ${new Date().toISOString().slice(0, 10)}`);
  console.log(`# ${cpu}, ${os.availableParallelism()} cores, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; Node ${process.version}; fast-kernel/PyTorch threads ${THREADS}`);
  console.log(
    `# step = computeGradients on a real masked batch + apply (AdamW, clip 1.0); 1 warm-up step, then round-robin across backends until ` +
      `≥ ${RULE.minSteps} steps and ≥ ${RULE.minSeconds} s (or ${RULE.maxSteps} steps), or ${RULE.maxSeconds} s; medians${QUICK ? ' (--quick)' : ''}`,
  );

  // build the dataset cache once here, so the children only read it
  const d0 = Date.now();
  const data = await prepareDataset({ seed: SEED, seqLen: T, vocabSize: V, validationFraction: VALIDATION_FRACTION, cacheDir: CACHE_DIR });
  console.log(`# data: ${data.trainCount.toLocaleString('en')} training sequences of ${T} tokens, vocab ${data.tokenizer.vocabSize} (${data.fromCache ? 'cached' : `built in ${((Date.now() - d0) / 1000).toFixed(0)} s`})`);

  const only = opt('--paths')?.split(',').map((s) => s.trim());
  for (const n of only ?? []) if (![...CPU_PATHS, ...OPTIONAL_PATHS].some((p) => p.name === n)) throw new Error(`--paths: unknown cell "${n}"`);
  const paths: Path[] = CPU_PATHS.filter((p) => !only || only.includes(p.name));
  for (const p of OPTIONAL_PATHS) {
    if (only && !only.includes(p.name)) continue;
    const c = nodeChild(p.name, childArgs(p, SIZES.S, { probe: true }));
    const m = await c.next();
    c.kill();
    if (m.ok) {
      console.log(`# ${p.name}: available (${m.detail})`);
      paths.push(p);
    } else {
      console.log(`# ${p.name}: skipped: ${m.skipped ?? m.error}`);
    }
  }

  const { torch, note } = flag('--no-torch') ? { torch: null, note: '--no-torch' } : findTorch();
  console.log(torch ? `# PyTorch ${torch.version} (${torch.python}, bench/torch_step.py, ${THREADS} threads)` : `# PyTorch: not installed (skipped) — ${note}`);

  const results: SizeResult[] = [];
  for (const key of sizeKeys) {
    process.stderr.write(`[${key}] ${((Date.now() - t0) / 1000).toFixed(0)} s elapsed\n`);
    const cells = await runSize(key, SIZES[key], paths, torch);
    results.push(report(key, SIZES[key], cells, torch !== null));
  }

  // ---------- summary ----------
  const names = [...paths.map((p) => p.name), 'PyTorch'];
  const shownNames = names.filter((n) => results.some((r) => Number.isFinite(r.ms[n])));
  console.log('\n## Summary: median ms per training step');
  const rows = results.map((r) => {
    const fast = ['wasm + fast', 'cpu + fast'].filter((n) => Number.isFinite(r.ms[n])).sort((a, b) => r.ms[a] - r.ms[b])[0];
    const fastMs = fast ? r.ms[fast] : NaN;
    const torchMs = r.ms.PyTorch;
    return [
      r.key,
      r.params.toLocaleString('en'),
      ...shownNames.map((n) => (Number.isFinite(r.ms[n]) ? `${fmtMs(r.ms[n])}${r.starred[n] ? '*' : ''}` : '—')),
      fast ?? '—',
      fmtRatio(r.ms.wasm / fastMs),
      Number.isFinite(torchMs) ? fmtRatio(fastMs / torchMs) : `(${fmtRatio(fastMs / TORCH_NOTES_MS[r.key])} vs notes)`,
      fmtRatio(r.ms['wasm + fast unfused'] / r.ms['wasm + fast']),
      Number.isFinite(torchMs) ? fmtRatio(r.ms['wasm + fast unfused'] / torchMs) : '—',
      fmtNum(r.flops / (fastMs / 1000) / 1e9, 2),
    ];
  });
  printTable(['size', 'params', ...shownNames, 'fastest fast path', 'speed-up vs wasm', 'time vs PyTorch', 'fused speed-up', 'unfused vs PyTorch', 'GFLOP/s (fast)'], rows);
  console.log(`  * fewer than ${RULE.minSteps} timed steps (a slow cell stops after ${RULE.maxSeconds} s of timed steps)`);
  console.log('  speed-up vs wasm = plain tfjs wasm ms / fastest fast path ms; time vs PyTorch = fastest fast path ms / PyTorch ms (> 1: slower than PyTorch)');
  console.log('  fused speed-up = wasm + fast unfused ms / wasm + fast ms (the fused ops of ml/kernels/fused.ts off vs on); unfused vs PyTorch = the same ratio without them');
  if (!torch) console.log(`  PyTorch: not installed (skipped); "vs notes" compares with PyTorch 1.13 on the same machine kind in shared/STACK-NOTES.md (S 118, M 250, L 610 ms)`);
  console.log(`\n# total ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

await main();
