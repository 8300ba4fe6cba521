/**
 * Compute-backend selection. `auto` tries, in order: tensorflow (tfjs-node-gpu, then tfjs-node:
 * an optional dependency whose native binary is often missing), webgpu (only with a real GPU
 * adapter: a software/CPU Vulkan adapter is slower than the CPU paths), then the fastest CPU
 * path (tfjs cpu with the BLAS-class kernels of ml/kernels when they load, else wasm).
 * Every choice and every skipped candidate is logged with its reason. Dawn is probed in a child
 * process first (probeAdapter), so that its native warnings on a machine without a GPU ("Couldn't
 * load Vulkan") never reach this process's stderr.
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import { createRequire } from 'node:module';
import { tf } from './tf.ts';
import { codedError, MemoryError } from '../core/errors.ts';
import { registerFused, setFusedEnabled, type FusedImpl, type FusedOp } from './kernels/fused.ts';
import { activateFused } from './kernels/fused-check.ts';
import { adapterHasF16, registerF16Backend, setupWebgpuKernels, type GpuLike, type Precision, type WebgpuMatmulChoice } from './kernels/webgpu-device.ts';

export type BackendChoice = 'auto' | 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';

export interface BackendInfo {
  /** tfjs backend name now active. */
  name: string;
  /** What runs the heavy kernels, e.g. "tfjs-node-gpu", "webgpu: vulkan / NVIDIA H200", "cpu + onnxruntime". */
  detail: string;
  /** Why each candidate was taken or skipped, in order. */
  log: string[];
  /** Fused ops (ml/kernels/fused.ts) running as one kernel on this backend; the rest run as tfjs compositions. */
  fused: FusedOp[];
  /** 'mixed' only on webgpu with the f16 matmul active (ml/kernels/webgpu-device.ts) */
  precision: Precision;
}

export const BackendError = codedError('BackendError', 'TTC_ERR_BACKEND');
export type BackendError = InstanceType<typeof BackendError>;
// defined with the other coded errors so that the checks made before a backend loads can throw it
export { MemoryError };

/**
 * Whether one training step of the run's model fits a backend's memory, with a one-line reason
 * naming the estimate and the limit (built from the model by ml/loop/memory-check.ts: this layer
 * does not know models). 'gpu' checks what a GPU backend keeps on the host.
 */
export interface MemoryFit {
  /** the model and batch, e.g. "88,802,464 parameters, batch 16×64" */
  subject: string;
  /** why: "needs ~X of …, over …% of the Y limit (source)" */
  fits(backend: 'wasm' | 'cpu' | 'gpu'): { ok: boolean; why: string };
}

const require = createRequire(import.meta.url);
const errText = (e: unknown) => (e instanceof Error ? e.message.split('\n')[0] : String(e));

async function tryTensorflow(log: string[]): Promise<string | null> {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      // Loading registers the 'tensorflow' backend; a package whose libtensorflow binary was
      // never downloaded throws here, and counts as absent.
      require(pkg);
      if (await tf.setBackend('tensorflow')) {
        log.push(`tensorflow: using ${pkg}`);
        return pkg;
      }
      log.push(`tensorflow: ${pkg} loaded but the backend did not initialise`);
    } catch (e) {
      log.push(`tensorflow: ${pkg} not usable (${errText(e)})`);
    }
  }
  return null;
}

interface GpuAdapterLike {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string; type?: string; backendType?: string; adapterType?: string; isFallbackAdapter?: boolean };
  isFallbackAdapter?: boolean;
}

const adapterLabel = (adapter: GpuAdapterLike): string => {
  const info = adapter.info ?? {};
  return [info.backendType, info.vendor, info.device || info.description || info.architecture].filter(Boolean).join(' / ');
};

function isSoftware(adapter: GpuAdapterLike): boolean {
  const info = adapter.info ?? {};
  return adapter.isFallbackAdapter === true || info.isFallbackAdapter === true || info.adapterType === 'cpu' || info.architecture === 'software' || /llvmpipe|lavapipe|swiftshader/i.test(adapterLabel(adapter));
}

const PROBE_TIMEOUT_MS = 60_000;

/**
 * Which adapter Dawn (the `webgpu` package) finds, asked in a child process. Dawn writes its
 * diagnostics straight to the process's stderr from native code ("Couldn't load Vulkan:
 * libvulkan.so.1 …", "vkCreateInstance: Found no drivers!", "… artificially reduced …"): asked
 * here, they would reach the console of every run on a machine without a GPU. The child's stderr
 * is captured and dropped unless the probe fails (then its last lines are the reason); Dawn is
 * loaded in this process only when the probe found an adapter that will be used.
 */
async function probeAdapter(): Promise<{ adapter: GpuAdapterLike | null } | { error: string }> {
  let dawnPath: string;
  try {
    dawnPath = require.resolve('webgpu');
  } catch (e) {
    return { error: errText(e) };
  }
  const script = `const d = require(${JSON.stringify(dawnPath)}); Object.assign(globalThis, d.globals);
const keys = ['vendor', 'architecture', 'device', 'description', 'type', 'backendType', 'adapterType', 'isFallbackAdapter'];
const done = (o) => process.stdout.write(JSON.stringify(o) + '\\n', () => process.exit(0));
d.create([]).requestAdapter().then((a) => {
  if (!a) return done({ adapter: null });
  const info = {};
  for (const k of keys) if (a.info && a.info[k] !== undefined && a.info[k] !== '') info[k] = a.info[k];
  done({ adapter: { info, isFallbackAdapter: a.isFallbackAdapter } });
}, (e) => done({ error: String((e && e.message) || e).split('\\n')[0] }));`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += String(d)));
    child.stderr.on('data', (d) => (err = (err + String(d)).slice(-2000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), PROBE_TIMEOUT_MS);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ error: `the adapter probe did not start (${errText(e)})` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').pop() ?? '';
      try {
        const r = JSON.parse(line) as { adapter: GpuAdapterLike | null } | { error: string };
        if ('error' in r || 'adapter' in r) return resolve(r);
      } catch {
        // reported below
      }
      const why = signal === 'SIGKILL' ? `no answer within ${PROBE_TIMEOUT_MS / 1000} s` : `exit ${signal ?? code}`;
      const tail = err.trim().split('\n').slice(-2).join(' | ');
      resolve({ error: `the adapter probe failed (${why})${tail ? `: ${tail}` : ''}` });
    });
  });
}

/** Real GPU adapters only, unless allowSoftware (e.g. lavapipe in CI tests of the webgpu code path). */
async function tryWebgpu(log: string[], allowSoftware: boolean, kernels: { precision: Precision; matmul: WebgpuMatmulChoice; forced: boolean }): Promise<WebgpuChoice | null> {
  let adapter: GpuAdapterLike | null;
  let gpu: GpuLike;
  try {
    type Gpu = { requestAdapter: () => Promise<GpuAdapterLike | null> };
    // The tfjs webgpu backend looks for navigator.gpu before it is imported. An entry point that
    // bundles that backend (bench/gpu.ts, see docs/gpu.md) sets navigator.gpu first: reuse it.
    const nav = ((globalThis as { navigator?: object }).navigator ??= {}) as { gpu?: Gpu };
    let navGpu = nav.gpu;
    if (typeof navGpu?.requestAdapter !== 'function') {
      // Dawn's first look at the machine happens in a child process (probeAdapter): on a machine
      // without a usable GPU it writes its warnings there, not on this process's stderr.
      const probe = await probeAdapter();
      if ('error' in probe) {
        log.push(`webgpu: Dawn not usable (${probe.error})`);
        return null;
      }
      if (!probe.adapter) {
        log.push('webgpu: no GPU adapter found (no Vulkan driver/GPU on this machine)');
        return null;
      }
      if (isSoftware(probe.adapter) && !allowSoftware) {
        log.push(`webgpu: adapter "${adapterLabel(probe.adapter)}" is a software (CPU) implementation, skipped`);
        return null;
      }
      const dawn = require('webgpu') as { create: (flags: string[]) => unknown; globals: Record<string, unknown> };
      Object.assign(globalThis, dawn.globals);
      navGpu = dawn.create([]) as Gpu;
      nav.gpu = navGpu;
    }
    gpu = navGpu as unknown as GpuLike;
    adapter = await navGpu.requestAdapter();
  } catch (e) {
    log.push(`webgpu: Dawn not usable (${errText(e)})`);
    return null;
  }
  if (!adapter) {
    log.push('webgpu: no GPU adapter found (no Vulkan driver/GPU on this machine)');
    return null;
  }
  const label = adapterLabel(adapter);
  const software = isSoftware(adapter);
  if (software && !allowSoftware) {
    log.push(`webgpu: adapter "${label}" is a software (CPU) implementation, skipped`);
    return null;
  }
  // model.precision = mixed needs shader-f16: refused when webgpu is forced, fp32 (logged) under auto
  let precision = kernels.precision;
  if (precision === 'mixed' && !adapterHasF16(adapter)) {
    const why = `adapter "${label}" has no shader-f16`;
    if (kernels.forced) throw new BackendError(`model.precision "mixed" needs a webgpu adapter with shader-f16: ${why}`);
    log.push(`webgpu: ${why}: mixed precision unavailable, training in fp32`);
    precision = 'fp32';
  }
  try {
    // (already registered when an entry point imported it itself, e.g. a bundle with tfjs inside)
    if (!tf.findBackendFactory('webgpu')) require('@tensorflow/tfjs-backend-webgpu');
    if (precision === 'mixed') registerF16Backend(gpu);
    if (!(await tf.setBackend('webgpu'))) throw new Error('setBackend returned false');
  } catch (e) {
    log.push(`webgpu: adapter "${label}" found but the tfjs webgpu backend failed (${errText(e)})`);
    return null;
  }
  log.push(`webgpu: using adapter "${label}"`);
  return { label: `webgpu: ${label}${precision === 'mixed' ? ', mixed precision' : ''}`, precision, matmul: kernels.matmul, software };
}

interface WebgpuChoice {
  label: string;
  precision: Precision;
  matmul: WebgpuMatmulChoice;
  software: boolean;
}

async function initWasm(log: string[]): Promise<boolean> {
  try {
    require('@tensorflow/tfjs-backend-wasm');
    if (await tf.setBackend('wasm')) return true;
    log.push('wasm: the tfjs wasm backend did not initialise');
  } catch (e) {
    log.push(`wasm: not usable (${errText(e)})`);
  }
  return false;
}

interface FastKernelResult {
  ok: boolean;
  impl: string;
  reason?: string;
}

/** Re-registers the matmul kernels of the active CPU backend with BLAS-class ones (ml/kernels), if they load here. */
async function tryFastKernels(log: string[], threads: number): Promise<FastKernelResult> {
  const backend = tf.getBackend();
  try {
    const kernels = await import('./kernels/index.ts');
    const r = await kernels.registerFastCpuKernels({ threads, backends: [backend] });
    log.push(r.ok ? `${backend}: fast matmul kernels active (${r.impl}, ${threads} threads)` : `${backend}: fast matmul kernels unavailable (${r.reason ?? 'unknown reason'})`);
    return r;
  } catch (e) {
    log.push(`${backend}: fast matmul kernels unavailable (${errText(e)})`);
    return { ok: false, impl: '', reason: errText(e) };
  }
}

export function threadCount(configured: number): number {
  return configured > 0 ? configured : os.availableParallelism();
}

export interface BackendOptions {
  threads: number;
  /** Replace the CPU backends' matmul kernels with the fast ones (default true). */
  fastKernels?: boolean;
  /** Accept a software webgpu adapter (tests of the webgpu code path). Default: false for `auto`,
   * true for `webgpu` (forcing webgpu takes any adapter unless this is explicitly false). */
  allowSoftwareGpu?: boolean;
  /** The run's memory needs: `auto` takes the first CPU backend that holds the step (wasm, else
   * cpu), a requested backend that cannot hold it is refused (MemoryError). Without it: no check. */
  memory?: MemoryFit;
  /** Run the encoder's fused ops as one kernel where the backend has a self-tested one (default true). */
  fusedKernels?: boolean;
  /** model.precision (default fp32): mixed needs webgpu with shader-f16 — refused when a backend is
   * forced, fp32 with the reason logged under auto */
  precision?: Precision;
  /** webgpu's fp32 matmul: auto (the tiled one if it wins the start-up check), tiled, tfjs; default
   * TTC_WEBGPU_MATMUL or auto */
  webgpuMatmul?: WebgpuMatmulChoice;
}

function matmulChoice(opts: BackendOptions): WebgpuMatmulChoice {
  const v = opts.webgpuMatmul ?? process.env.TTC_WEBGPU_MATMUL ?? 'auto';
  if (v !== 'auto' && v !== 'tiled' && v !== 'tfjs') throw new BackendError(`TTC_WEBGPU_MATMUL: expected auto, tiled or tfjs, got "${v}"`);
  return v;
}

/** Registers the active backend's fused kernels, self-tests them and activates those that pass. */
async function enableFusedKernels(log: string[], on: boolean): Promise<FusedOp[]> {
  setFusedEnabled(on);
  if (!on) {
    log.push('fused kernels disabled by config (fusedKernels: false)');
    return [];
  }
  const backend = tf.getBackend();
  let impls: FusedImpl[] = [];
  try {
    if (backend === 'webgpu') impls = (await import('./kernels/webgpu/index.ts')).webgpuFusedImpls();
    else if (backend === 'cpu' || backend === 'wasm') impls = (await import('./kernels/cpu/index.ts')).cpuFusedImpls(backend);
    // attention on cpu is one onnxruntime graph per direction (ml/kernels/cpu-attention.ts)
    if (backend === 'cpu' && !impls.some((i) => i.op === 'attention')) impls.push((await import('./kernels/cpu-attention.ts')).cpuAttentionImpl());
  } catch (e) {
    log.push(`${backend}: fused kernels unavailable (${errText(e)})`);
    return [];
  }
  for (const impl of impls) registerFused(impl);
  const on_ = await activateFused(log, backend);
  if (impls.length === 0) log.push(`${backend}: no fused kernels for this backend (tfjs compositions)`);
  return on_;
}

export async function initBackend(choice: BackendChoice, opts: BackendOptions): Promise<BackendInfo> {
  const log: string[] = [];
  const threads = threadCount(opts.threads);
  const precision = opts.precision ?? 'fp32';
  const done = async (detail: string, gpu?: WebgpuChoice): Promise<BackendInfo> => {
    const fused = await enableFusedKernels(log, opts.fusedKernels !== false);
    // after the fused ops' self-test, which compares them with the fp32 tfjs composition
    let precision_: Precision = 'fp32';
    if (gpu) {
      try {
        log.push(...(await setupWebgpuKernels(gpu.precision, gpu.matmul, gpu.software)).log);
        precision_ = gpu.precision;
      } catch (e) {
        // the f16 matmul failed its self-test: refused when webgpu is forced, fp32 under auto
        if (choice === 'webgpu') throw new BackendError(errText(e));
        log.push(`webgpu: ${errText(e)}: training in fp32`);
        log.push(...(await setupWebgpuKernels('fp32', gpu.matmul, gpu.software)).log);
        detail = detail.replace(/, mixed precision$/, '');
      }
    }
    return { name: tf.getBackend(), detail, log, fused, precision: precision_ };
  };
  if (precision === 'mixed' && choice !== 'auto' && choice !== 'webgpu') throw new BackendError(`model.precision "mixed" needs backend webgpu (or auto), got "${choice}"`);
  const gpuStep = async (): Promise<BackendInfo | null> => {
    const gpu = await tryWebgpu(log, choice === 'webgpu' ? opts.allowSoftwareGpu !== false : opts.allowSoftwareGpu === true, { precision, matmul: matmulChoice(opts), forced: choice === 'webgpu' });
    if (gpu) return done(gpu.label, gpu);
    if (choice === 'webgpu') throw new BackendError(`backend "webgpu" requested but unavailable:\n  ${log.join('\n  ')}`);
    return null;
  };
  const mem = opts.memory;
  const refuse = (what: string, why: string) => new MemoryError(`${what} (a training step of ${mem!.subject}): ${why}`);
  // a GPU holds the tensors, the host still holds the trainer's state: checked before any probing
  const gpuFit = mem?.fits('gpu');
  if ((choice === 'tensorflow' || choice === 'webgpu') && gpuFit && !gpuFit.ok) throw refuse(`backend "${choice}" cannot hold this model`, gpuFit.why);
  // auto with mixed precision: webgpu (where mixed runs) before tensorflow; any other backend trains in fp32, logged
  const webgpuFirst = precision === 'mixed' && choice === 'auto';
  if (webgpuFirst && gpuFit?.ok !== false) {
    const g = await gpuStep();
    if (g) return g;
  }
  const fp32Instead = () => {
    if (precision === 'mixed') log.push(`${tf.getBackend()}: mixed precision needs webgpu with shader-f16: training in fp32`);
  };
  if ((choice === 'tensorflow' || choice === 'auto') && gpuFit?.ok !== false) {
    const pkg = await tryTensorflow(log);
    if (pkg) {
      fp32Instead();
      return done(pkg);
    }
    if (choice === 'tensorflow') throw new BackendError(`backend "tensorflow" requested but unavailable:\n  ${log.join('\n  ')}`);
  }
  if (!webgpuFirst && (choice === 'webgpu' || choice === 'auto') && gpuFit?.ok !== false) {
    const g = await gpuStep();
    if (g) return g;
  }
  // CPU paths. wasm (SIMD) runs element-wise kernels faster than plain tfjs cpu, so auto prefers
  // it when the step fits its 32-bit heap; both get the fast kernels when those load.
  const wasmFit = mem?.fits('wasm');
  const cpuFit = mem?.fits('cpu');
  if (choice === 'wasm' && wasmFit && !wasmFit.ok) throw refuse('backend "wasm" cannot hold this model', wasmFit.why);
  if (choice === 'cpu' && cpuFit && !cpuFit.ok) throw refuse('backend "cpu" cannot hold this model', cpuFit.why);
  if (choice === 'auto' && wasmFit && cpuFit && !wasmFit.ok && !cpuFit.ok) {
    throw refuse('no backend can hold this model', `on wasm it ${wasmFit.why}; on cpu it ${cpuFit.why}`);
  }
  let plain: string;
  const wasmWanted = choice === 'wasm' || (choice === 'auto' && wasmFit?.ok !== false);
  if (choice === 'auto' && wasmFit) log.push(wasmFit.ok ? `wasm: chosen by memory, the step (${mem!.subject}) ${wasmFit.why}` : `wasm: skipped, the step (${mem!.subject}) ${wasmFit.why}`);
  if (!wasmWanted || !(await initWasm(log))) {
    if (choice === 'wasm') throw new BackendError(`backend "wasm" requested but unavailable:\n  ${log.join('\n  ')}`);
    if (choice === 'auto' && cpuFit && !cpuFit.ok) throw refuse('no available backend can hold this model', `on cpu it ${cpuFit.why}`);
    if (choice === 'auto' && cpuFit) log.push(`cpu: the step ${cpuFit.why}`);
    await tf.setBackend('cpu');
    plain = 'tfjs cpu kernels';
  } else {
    plain = 'tfjs wasm kernels (SIMD, 1 thread: tfjs disables wasm threads in Node)';
  }
  fp32Instead();
  if (opts.fastKernels !== false) {
    const fast = await tryFastKernels(log, threads);
    if (fast.ok) return done(`${tf.getBackend()} + ${fast.impl} ${tf.getBackend() === 'cpu' ? 'matmul and element-wise ops' : 'matmul'}`);
  } else {
    log.push('fast matmul kernels disabled by config (fastKernels: false)');
  }
  log.push(`${tf.getBackend()}: using plain ${plain}`);
  return done(`${tf.getBackend()} (plain ${plain})`);
}
