/**
 * Fast CPU matmul for TensorFlow.js (issue #4): re-registers `BatchMatMul` and `_FusedMatMul` on
 * the `cpu` backend (and on `wasm` where that backend is registered) with kernels that run the
 * product in onnxruntime-node's MLAS GEMM. See docs/kernels.md for the numbers and the design.
 *
 *   const r = await registerFastCpuKernels({ threads: 2 });
 *   if (!r.ok) console.warn(`fast matmul off: ${r.reason}`);   // plain tfjs kernels stay in place
 */
import os from 'node:os';

import { tf } from '../tf.ts';
import { makeBatchMatMul, makeFusedMatMul, stats, type FastKernelOptions } from './matmul.ts';
import { makeOrtOp, opStats, ORT_OP_KERNELS } from './ort-ops.ts';
import { disposeSessions, getSpinning, getThreads, loadOrt, session, setSpinning, setThreads, tensor } from './ort.ts';

export interface FastCpuKernelsOptions {
  /** onnxruntime intra-op threads (default os.availableParallelism()) */
  threads?: number;
  /** backends to patch, default ['cpu', 'wasm']; those not registered with tfjs are skipped */
  backends?: string[];
  /** products (batch·m·n·k) smaller than this use the original kernel; default per backend */
  minWork?: number;
  /** the same for products with a transposed operand; default per backend */
  minWorkTransposed?: number;
  /** products smaller than this run on one onnxruntime thread; default 64·64·64 */
  singleThreadBelow?: number;
  /** let onnxruntime's threads spin between calls (default false; see docs/kernels.md) */
  spinning?: boolean;
  /**
   * on the cpu backend, also run element-wise ops, reductions, transposes and softmax in
   * onnxruntime (./ort-ops.ts; default true): tfjs-cpu's own are generic JavaScript, 10–50× slower
   * (the embedding row lookups are ./cpu/gather-rows.ts's, installed with the fused kernels)
   */
  ops?: boolean;
  /** with `ops`: outputs smaller than this keep tfjs's kernel (default 4096 elements) */
  opsMinElements?: number;
  /** with `ops`: ops touching fewer elements than this run on one thread (default 65,536) */
  opsSingleThreadBelow?: number;
}

export interface FastCpuKernelsResult {
  ok: boolean;
  /** the patched backends, comma-separated ('cpu' or 'cpu,wasm'); '' when !ok */
  backend: string;
  backends: string[];
  /** e.g. 'onnxruntime-node 1.30.0 (MLAS)' */
  impl: string;
  threads: number;
  reason?: string;
}

const KERNELS = ['BatchMatMul', '_FusedMatMul'] as const;
/**
 * Below these many multiply-adds the backend's own kernel is as fast (bench/kernels.ts): tfjs-wasm's
 * XNNPACK is quick on small untransposed products, slow on every transposed one; tfjs cpu is slow
 * on everything.
 */
const DEFAULTS: Record<string, { minWork: number; minWorkTransposed: number }> = {
  cpu: { minWork: 0, minWorkTransposed: 0 },
  wasm: { minWork: 64 * 64 * 64, minWorkTransposed: 16 * 16 * 16 },
};
const DEFAULT_SINGLE_THREAD_BELOW = 64 * 64 * 64;

const originals = new Map<string, tf.KernelConfig>();
let lastResult: FastCpuKernelsResult | null = null;

function restoreOriginals(): void {
  for (const cfg of originals.values()) {
    tf.unregisterKernel(cfg.kernelName, cfg.backendName);
    tf.registerKernel(cfg);
  }
  originals.clear();
}

/** Checks that the library loads and multiplies correctly before any kernel is swapped. */
function selfTest(): void {
  const s = session('selftest', () => ({
    nodes: [{ op: 'FusedMatMul', domain: 'com.microsoft', inputs: ['A', 'B'], outputs: ['Y'], attrs: { transA: 0, transB: 1 } }],
    inputs: [
      { name: 'A', rank: 2 },
      { name: 'B', rank: 2 },
    ],
    output: { name: 'Y', rank: 2 },
  }));
  const a = Float32Array.from([1, 2, 3, 4, 5, 6]); // 2x3
  const b = Float32Array.from([1, 0, -1, 2, 1, 0]); // (2x3)^T
  const y = new Float32Array(4);
  s.run({ A: tensor(a, [2, 3]), B: tensor(b, [2, 3]) }, { Y: tensor(y, [2, 2]) }, {});
  const want = [-2, 4, -2, 13];
  if (want.some((v, i) => Math.abs(v - y[i]) > 1e-5)) throw new Error(`self-test gave [${Array.from(y)}], want [${want}]`);
}

/**
 * Re-registers the matmul kernels of the `cpu` (and `wasm`) backend with the onnxruntime path.
 * Never throws: where the fast path cannot load it returns ok:false with the reason, and the
 * original kernels stay registered. Calling it again re-applies the options.
 */
export async function registerFastCpuKernels(opts: FastCpuKernelsOptions = {}): Promise<FastCpuKernelsResult> {
  const threads = opts.threads ?? (typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length);
  const fail = (reason: string, impl = 'onnxruntime-node'): FastCpuKernelsResult => ({ ok: false, backend: '', backends: [], impl, threads, reason });
  let impl = 'onnxruntime-node';
  try {
    restoreOriginals();
    const rt = loadOrt();
    impl = `onnxruntime-node ${rt.version} (MLAS)`;
    setThreads(threads);
    if (opts.spinning !== undefined) setSpinning(opts.spinning);
    selfTest();
    const wanted = opts.backends ?? ['cpu', 'wasm'];
    const patched: string[] = [];
    for (const backendName of wanted) {
      if (!KERNELS.every((k) => tf.getKernel(k, backendName))) continue;
      const d = DEFAULTS[backendName] ?? DEFAULTS.cpu;
      const kopts: FastKernelOptions = {
        minWork: opts.minWork ?? d.minWork,
        minWorkTransposed: opts.minWorkTransposed ?? opts.minWork ?? d.minWorkTransposed,
        singleThreadBelow: opts.singleThreadBelow ?? DEFAULT_SINGLE_THREAD_BELOW,
      };
      for (const kernelName of KERNELS) {
        const orig = tf.getKernel(kernelName, backendName)!;
        const make = kernelName === 'BatchMatMul' ? makeBatchMatMul : makeFusedMatMul;
        tf.unregisterKernel(kernelName, backendName);
        originals.set(`${backendName}/${kernelName}`, orig);
        tf.registerKernel({
          kernelName,
          backendName,
          kernelFunc: make(backendName, orig.kernelFunc, kopts),
          // the original's setup (e.g. wasm's cwrap) must still run: fallbacks call it
          setupFunc: orig.setupFunc,
          disposeFunc: orig.disposeFunc,
        });
      }
      if (backendName === 'cpu' && opts.ops !== false) {
        const oopts = { minElements: opts.opsMinElements ?? 4096, singleThreadBelow: opts.opsSingleThreadBelow ?? 1 << 16 };
        for (const kernelName of ORT_OP_KERNELS) {
          const orig = tf.getKernel(kernelName, backendName);
          if (!orig) continue;
          tf.unregisterKernel(kernelName, backendName);
          originals.set(`${backendName}/${kernelName}`, orig);
          tf.registerKernel({ kernelName, backendName, kernelFunc: makeOrtOp(kernelName, orig.kernelFunc, oopts), setupFunc: orig.setupFunc, disposeFunc: orig.disposeFunc });
        }
      }
      patched.push(backendName);
    }
    if (patched.length === 0) return (lastResult = fail(`none of the backends ${wanted.join(', ')} is registered with tfjs`, impl));
    lastResult = { ok: true, backend: patched.join(','), backends: patched, impl, threads: getThreads() };
    return lastResult;
  } catch (e) {
    try {
      restoreOriginals();
    } catch {
      /* keep the first error */
    }
    return (lastResult = fail((e as Error).message ?? String(e), impl));
  }
}

/** Puts the original tfjs kernels back (and frees onnxruntime's sessions and threads). */
export function unregisterFastCpuKernels(): void {
  restoreOriginals();
  disposeSessions();
  lastResult = null;
}

/** Whether the fast kernels are registered now. */
export function fastCpuKernelsActive(): boolean {
  return originals.size > 0;
}

/** The result of the last registerFastCpuKernels call while it is in force, else null. */
export function fastCpuKernelsInfo(): FastCpuKernelsResult | null {
  return lastResult && fastCpuKernelsActive() ? { ...lastResult, threads: getThreads() } : null;
}

/** Sets the threads the fast matmul may use (at least 1); takes effect on the next matmul. */
export function setFastKernelThreads(n: number): void {
  setThreads(n);
}

export function getFastKernelThreads(): number {
  return getThreads();
}

export function setFastKernelSpinning(on: boolean): void {
  setSpinning(on);
}

export function getFastKernelSpinning(): boolean {
  return getSpinning();
}

/** How many matmul calls took the fast path and how many went to the original kernel. */
export function fastKernelStats(): { fast: number; fallback: number; opsFast: number; opsFallback: number } {
  return { ...stats, opsFast: opStats.fast, opsFallback: opStats.fallback };
}

export function resetFastKernelStats(): void {
  stats.fast = 0;
  stats.fallback = 0;
  opStats.fast = 0;
  opStats.fallback = 0;
}
