/**
 * GFLOP/s of model-shaped matmuls: the fast path (ml/kernels, onnxruntime MLAS) on the cpu and
 * wasm backends, tfjs's own wasm and cpu kernels, and numpy (OpenBLAS) in a python3 subprocess.
 *
 *   node --import tsx bench/kernels.ts [--quick] [--threads N] [--no-cpu] [--reps N] [--step | --only-step] [--step-cpu]
 *
 * --step adds forward+backward of the project's MLM model (ml/model; L4, d256, B16×T64, V8000)
 * on wasm and on wasm/cpu with the fast kernels; --step-cpu adds plain tfjs cpu (about a minute).
 *
 * Implementations are timed round-robin within each shape (noisy shared machines), medians shown.
 * numpy runs in its own process with the same thread count and OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE
 * unset there only (they slow a current OpenBLAS; see the environment notes).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import os from 'node:os';

import '@tensorflow/tfjs-backend-wasm';

import { tf } from '../ml/tf.ts';
import { printTable } from './lib/table.ts';
import {
  fastKernelStats,
  registerFastCpuKernels,
  setFastKernelSpinning,
  setFastKernelThreads,
  unregisterFastCpuKernels,
} from '../ml/kernels/index.ts';

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(name);
const opt = (name: string, dflt: number) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const QUICK = flag('--quick');
const THREADS = opt('--threads', typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length);
const REPS = opt('--reps', QUICK ? 5 : 11);
const WITH_CPU = !flag('--no-cpu');
const ONLY_STEP = flag('--only-step');
const STEP = flag('--step') || flag('--step-cpu') || ONLY_STEP;
const STEP_CPU = flag('--step-cpu');
/** time budget per (shape, implementation), so tfjs cpu's 1024³ does not take minutes */
const BUDGET_MS = QUICK ? 1500 : 4000;

interface Shape {
  name: string;
  batchA: number;
  batchB: number;
  m: number;
  k: number;
  n: number;
  tA: boolean;
  tB: boolean;
}
const sh = (name: string, m: number, k: number, n: number, tA = false, tB = false, batchA = 0, batchB = 0): Shape => ({ name, m, k, n, tA, tB, batchA, batchB });

// d = 256, ffn = 1024, B·T = 1024 rows (batch 16 × 64 tokens), attention 64 heads·batch of 64×64
const SHAPES: Shape[] = [
  sh('x·Wq      [1024×256]·[256×256]', 1024, 256, 256),
  sh('x·W1      [1024×256]·[256×1024]', 1024, 256, 1024),
  sh('h·W2      [1024×1024]·[1024×256]', 1024, 1024, 256),
  sh('dX=dY·Wᵀ  [1024×256]·[256×256]ᵀ', 1024, 256, 256, false, true),
  sh('dW=Xᵀ·dY  [1024×256]ᵀ·[1024×256]', 256, 1024, 256, true, false),
  sh('dH=dY·W1ᵀ [1024×1024]·[256×1024]ᵀ', 1024, 1024, 256, false, true),
  sh('dW1=Xᵀ·dY [1024×256]ᵀ·[1024×1024]', 256, 1024, 1024, true, false),
  sh('dW2=Hᵀ·dY [1024×1024]ᵀ·[1024×256]', 1024, 1024, 256, true, false),
  sh('Q·Kᵀ      64×[64×64]·[64×64]ᵀ', 64, 64, 64, false, true, 64, 64),
  sh('P·V       64×[64×64]·[64×64]', 64, 64, 64, false, false, 64, 64),
  sh('dP=dO·Vᵀ  64×[64×64]·[64×64]ᵀ', 64, 64, 64, false, true, 64, 64),
  sh('dV=Pᵀ·dO  64×[64×64]ᵀ·[64×64]', 64, 64, 64, true, false, 64, 64),
  ...[16, 32, 64, 128, 256, 512, 1024].map((s) => sh(`square ${s}`, s, s, s)),
  sh('square 1024 ᵀᵀ', 1024, 1024, 1024, true, true),
];

function shapesOf(s: Shape): [number[], number[]] {
  const a = s.tA ? [s.k, s.m] : [s.m, s.k];
  const b = s.tB ? [s.n, s.k] : [s.k, s.n];
  return [s.batchA ? [s.batchA, ...a] : a, s.batchB ? [s.batchB, ...b] : b];
}
const flopsOf = (s: Shape) => 2 * Math.max(s.batchA, s.batchB, 1) * s.m * s.k * s.n;

// ---------- numpy ----------
/**
 * numpy in a python3 subprocess that times one matmul per request, so its runs interleave with
 * the tfjs ones (a shared, noisy machine otherwise favours whichever ran in a quiet moment).
 */
class Numpy {
  private proc: ChildProcessWithoutNullStreams;
  private waiting: ((line: string) => void)[] = [];
  private constructor(proc: ChildProcessWithoutNullStreams) {
    this.proc = proc;
    createInterface({ input: proc.stdout }).on('line', (line) => this.waiting.shift()?.(line));
  }

  static async start(): Promise<{ np: Numpy | null; note: string }> {
    const py = `
import json, sys, time
import numpy as np
spec = json.loads(sys.stdin.readline())
A = B = None
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == 'setup':
        s = spec[int(cmd[1])]
        (sa, sb) = s['shapes']
        a = np.random.rand(*sa).astype(np.float32)
        b = np.random.rand(*sb).astype(np.float32)
        A = np.swapaxes(a, -1, -2) if s['tA'] else a
        B = np.swapaxes(b, -1, -2) if s['tB'] else b
        for _ in range(3): np.matmul(A, B)
        print('ok', flush=True)
    elif cmd[0] == 'run':
        t = time.perf_counter(); np.matmul(A, B); print((time.perf_counter() - t) * 1000, flush=True)
    elif cmd[0] == 'info':
        cfg = ''
        try:
            from threadpoolctl import threadpool_info
            cfg = '; '.join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} {i.get('num_threads')} threads" for i in threadpool_info())
        except Exception:
            pass
        print(json.dumps({'numpy': np.__version__, 'cfg': cfg}), flush=True)
`;
    const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(THREADS), OMP_NUM_THREADS: String(THREADS) };
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
    const proc = spawn('python3', ['-c', py], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += String(d)));
    const exited = new Promise<string>((resolve) => {
      proc.on('error', (e) => resolve(e.message));
      proc.on('exit', () => resolve(stderr.trim().split('\n').pop() ?? 'python3 exited'));
    });
    const np = new Numpy(proc);
    proc.stdin.write(`${JSON.stringify(SHAPES.map((x) => ({ ...x, shapes: shapesOf(x) })))}\n`);
    const info = await Promise.race([np.ask('info'), exited.then((why) => ({ failed: why }))]);
    if (typeof info !== 'string') return { np: null, note: `numpy column skipped: ${info.failed}` };
    const j = JSON.parse(info) as { numpy: string; cfg: string };
    return { np, note: `numpy ${j.numpy} (OpenBLAS), OPENBLAS_NUM_THREADS=${THREADS}${j.cfg ? `, ${j.cfg}` : ''}` };
  }

  ask(cmd: string): Promise<string> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.proc.stdin.write(`${cmd}\n`);
    });
  }

  close(): void {
    this.proc.stdin.end();
  }
}

// ---------- tfjs ----------
type Impl = { name: string; backend: 'cpu' | 'wasm' | 'numpy'; fast: boolean };
const IMPLS: Impl[] = [
  { name: 'fast@cpu', backend: 'cpu', fast: true },
  { name: 'fast@wasm', backend: 'wasm', fast: true },
  { name: 'tfjs wasm', backend: 'wasm', fast: false },
  ...(WITH_CPU ? [{ name: 'tfjs cpu', backend: 'cpu' as const, fast: false }] : []),
  { name: 'numpy', backend: 'numpy', fast: false },
];

async function main(): Promise<void> {
  await tf.setBackend('wasm');
  await tf.setBackend('cpu');
  // the original kernels, called directly so both paths are live at once
  const orig = {
    cpu: tf.getKernel('BatchMatMul', 'cpu')!.kernelFunc,
    wasm: tf.getKernel('BatchMatMul', 'wasm')!.kernelFunc,
  };
  // (the fast kernels too are called as kernel functions, so neither side pays tf.matMul's engine overhead)
  const reg = await registerFastCpuKernels({ threads: THREADS });
  if (!reg.ok) throw new Error(`fast kernels did not load: ${reg.reason}`);
  if (ONLY_STEP) return stepBench();
  // the wasm backend's own small-product threshold would hide the fast path's small-size numbers
  await registerFastCpuKernels({ threads: THREADS, minWork: 0 });

  console.log(`# matmul GFLOP/s — ${os.cpus()[0]?.model ?? '?'}, ${os.cpus().length} logical CPUs, load avg ${os.loadavg()[0].toFixed(2)}`);
  console.log(`# fast path: ${reg.impl}, ${THREADS} thread(s); medians of ${REPS} runs (fewer where one run exceeds the ${BUDGET_MS} ms budget)`);
  const fastK = {
    cpu: tf.getKernel('BatchMatMul', 'cpu')!.kernelFunc,
    wasm: tf.getKernel('BatchMatMul', 'wasm')!.kernelFunc,
  };
  const { np, note } = await Numpy.start();
  console.log(`# ${note}`);
  const impls = IMPLS.filter((i) => i.backend !== 'numpy' || np);

  const rows: string[][] = [];
  const header = ['shape', 'GFLOP', ...IMPLS.map((i) => i.name), 'fast/numpy', 'fast/wasm'];
  for (const [si, s] of SHAPES.entries()) {
    if (np) await np.ask(`setup ${si}`);
    const [sa, sb] = shapesOf(s);
    const tensors: Record<string, [tf.Tensor, tf.Tensor]> = {};
    for (const be of ['cpu', 'wasm'] as const) {
      await tf.setBackend(be);
      tensors[be] = [tf.randomUniform(sa, -1, 1), tf.randomUniform(sb, -1, 1)];
    }
    const times: Record<string, number[]> = Object.fromEntries(impls.map((i) => [i.name, []]));
    const spent: Record<string, number> = Object.fromEntries(impls.map((i) => [i.name, 0]));
    const once = async (impl: Impl): Promise<number> => {
      if (impl.backend === 'numpy') return Number(await np!.ask('run'));
      await tf.setBackend(impl.backend);
      const [a, b] = tensors[impl.backend];
      const backend = tf.backend();
      const kernel = (impl.fast ? fastK : orig)[impl.backend];
      const t0 = performance.now();
      const y = kernel({ inputs: { a, b }, attrs: { transposeA: s.tA, transposeB: s.tB }, backend }) as tf.TensorInfo;
      const dt = performance.now() - t0;
      backend.disposeData(y.dataId);
      return dt;
    };
    for (const impl of impls) {
      // warm-up (session creation, JIT); tfjs cpu's warm-up doubles as its first sample when slow
      const dt = await once(impl);
      if (dt > BUDGET_MS / 4) times[impl.name].push(dt);
      spent[impl.name] += dt;
    }
    for (let r = 0; r < REPS; r++) {
      for (const impl of impls) {
        if (spent[impl.name] > BUDGET_MS && times[impl.name].length > 0) continue;
        const dt = await once(impl);
        times[impl.name].push(dt);
        spent[impl.name] += dt;
      }
    }
    for (const be of ['cpu', 'wasm']) tf.dispose(tensors[be]);
    const gflop = flopsOf(s) / 1e9;
    const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    const rate = (ms: number | null | undefined) => (ms ? gflop / (ms / 1000) : null);
    const rates = IMPLS.map((i) => (times[i.name]?.length ? rate(med(times[i.name])) : null));
    const npRate = rates[IMPLS.length - 1];
    const fast = rates[0];
    const wasmRate = rates[IMPLS.findIndex((i) => i.name === 'tfjs wasm')];
    const f1 = (x: number | null) => (x === null ? '—' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
    rows.push([
      s.name,
      gflop.toFixed(3),
      ...rates.map(f1),
      fast && npRate ? `${((fast / npRate) * 100).toFixed(0)}%` : '—',
      fast && wasmRate ? `${(fast / wasmRate).toFixed(0)}×` : '—',
    ]);
    process.stderr.write(`  ${s.name} done\n`);
  }
  np?.close();
  printTable(header, rows);

  // threads and spinning, on the fast cpu path only
  await tf.setBackend('cpu');
  const extra: string[][] = [];
  for (const s of [SHAPES[1], SHAPES[6], SHAPES[8], SHAPES.find((x) => x.name === 'square 128')!]) {
    const [sa, sb] = shapesOf(s);
    const a = tf.randomUniform(sa, -1, 1);
    const b = tf.randomUniform(sb, -1, 1);
    const cfgs: [string, number, boolean][] = [
      ['1 thread', 1, false],
      [`${THREADS} threads`, THREADS, false],
      [`${THREADS} threads, spinning`, THREADS, true],
    ];
    const res: number[][] = cfgs.map(() => []);
    for (let r = 0; r < REPS + 1; r++) {
      for (const [ci, [, th, spin]] of cfgs.entries()) {
        setFastKernelThreads(th);
        setFastKernelSpinning(spin);
        tf.matMul(a, b, s.tA, s.tB).dispose(); // (re)build the session outside the timing
        const t0 = performance.now();
        tf.matMul(a, b, s.tA, s.tB).dispose();
        if (r > 0) res[ci].push(performance.now() - t0);
      }
    }
    const gflop = flopsOf(s) / 1e9;
    extra.push([s.name, ...res.map((xs) => (gflop / ([...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] / 1000)).toFixed(1))]);
    tf.dispose([a, b]);
  }
  setFastKernelThreads(THREADS);
  setFastKernelSpinning(false);
  console.log('\n# fast@cpu GFLOP/s by thread setting (session rebuilt on each switch, excluded from timing)');
  printTable(['shape', `1 thread`, `${THREADS} threads`, `${THREADS} threads, spinning`], extra);
  const st = fastKernelStats();
  console.log(`\n# fast-path calls ${st.fast}, fallbacks ${st.fallback}`);
  if (STEP) await stepBench();
}

/** Forward + backward of the project's MLM model (no optimizer), ms per step. */
async function stepBench(): Promise<void> {
  const dims = { layers: 4, hidden: 256, heads: 4, ffn: 1024, seqLen: 64, vocab: 8000 };
  const B = 16;
  try {
    const { mlmLoss } = await import('../ml/model/transformer.ts');
    const { paramLayout } = await import('../ml/model/spec.ts');
    const { initialWeights, WeightTensors } = await import('../ml/model/weights.ts');
    const layout = paramLayout(dims);
    const flat = initialWeights(layout, 1, 0.02);
    const names = layout.specs.map((x) => x.name);
    const T = dims.seqLen;
    const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % dims.vocab);
    const masked = Int32Array.from({ length: Math.round(B * T * 0.15) }, (_, i) => (i * 13) % (B * T));
    const labels = Int32Array.from(masked, (p) => (p * 31) % dims.vocab);
    const cfgs: [string, 'cpu' | 'wasm', boolean][] = [
      ['tfjs wasm', 'wasm', false],
      ['wasm + fast matmul', 'wasm', true],
      ['cpu + fast matmul', 'cpu', true],
      ...(STEP_CPU ? [['tfjs cpu', 'cpu', false] as [string, 'cpu', boolean]] : []),
    ];
    const rows: string[][] = [];
    for (const [name, be, fast] of cfgs) {
      await tf.setBackend(be);
      if (fast) await registerFastCpuKernels({ threads: THREADS });
      else unregisterFastCpuKernels();
      const w = new WeightTensors(layout, flat);
      const batch = { ids: tf.tensor1d(ids, 'int32'), batch: B, maskedPositions: tf.tensor1d(masked, 'int32'), maskedLabels: tf.tensor1d(labels, 'int32') };
      const step = async (): Promise<number> => {
        const t0 = performance.now();
        const { value, grads } = tf.tidy(() =>
          tf.valueAndGrads((...ts: tf.Tensor[]) => mlmLoss(Object.fromEntries(names.map((n, i) => [n, ts[i]])), dims, batch) as tf.Scalar)(w.list()),
        );
        await Promise.all(grads.map((g) => g.data()));
        const loss = (await value.data())[0];
        tf.dispose([value, ...grads]);
        if (!Number.isFinite(loss)) throw new Error(`loss ${loss}`);
        return performance.now() - t0;
      };
      const warm = await step();
      const times: number[] = [];
      const n = be === 'cpu' && !fast ? 1 : QUICK ? 3 : 5;
      if (n === 1) times.push(warm);
      else for (let i = 0; i < n; i++) times.push(await step());
      times.sort((a, b) => a - b);
      rows.push([name, times[Math.floor(times.length / 2)].toFixed(0), `${times.length}`]);
      w.dispose();
      tf.dispose([batch.ids, batch.maskedPositions, batch.maskedLabels]);
    }
    await registerFastCpuKernels({ threads: THREADS });
    console.log(`\n# MLM forward+backward, L${dims.layers} d${dims.hidden} h${dims.heads} ffn${dims.ffn}, B${B}×T${T}, V${dims.vocab} (${layout.total} params)`);
    printTable(['backend', 'ms/step (median)', 'runs'], rows);
  } catch (e) {
    console.log(`\n# MLM step skipped: ${(e as Error).message}`);
  }
}


await main();
