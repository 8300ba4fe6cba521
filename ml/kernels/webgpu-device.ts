/**
 * The webgpu device for mixed precision, and which matmul kernels the webgpu backend runs
 * (ml/kernels/webgpu-matmul.ts). Called by ml/backend.ts once the webgpu adapter is chosen.
 *
 * tfjs's webgpu backend creates its device without `shader-f16` (base.ts of the package), so for
 * model.precision = mixed the 'webgpu' backend factory is replaced by one that requests what tfjs
 * requests plus `shader-f16`. tfjs prepends its own declarations to every shader, so a WGSL
 * `enable f16;` (which must come first) cannot be written by a program: the device's
 * createShaderModule prepends it to the shaders that carry F16_MARKER.
 */
import { tf } from '../tf.ts';
import { F16_MARKER, matMulWith, registerTiledMatMul, startupCheck, webgpuBackendClass, type StartupCheck, type TileConfig } from './webgpu-matmul.ts';

export type Precision = 'fp32' | 'mixed';
/** auto: the tiled fp32 matmul when it beats tfjs's in the start-up check; tiled / tfjs: forced */
export type WebgpuMatmulChoice = 'auto' | 'tiled' | 'tfjs';

interface AdapterLike {
  features: { has(name: string): boolean };
  limits: Record<string, number>;
  info?: unknown;
  requestDevice(desc: { requiredFeatures: string[]; requiredLimits: Record<string, number> }): Promise<DeviceLike>;
}
interface DeviceLike {
  createShaderModule(desc: { code: string; label?: string }): unknown;
}
export interface GpuLike {
  requestAdapter(opts?: { powerPreference?: string }): Promise<AdapterLike | null>;
}

export function adapterHasF16(adapter: unknown): boolean {
  const f = (adapter as { features?: { has?: (n: string) => boolean } }).features;
  return typeof f?.has === 'function' && f.has('shader-f16');
}

/**
 * Replaces tfjs's 'webgpu' backend factory by one whose device has `shader-f16` (before the backend
 * is first set: an initialised backend would be disposed).
 */
export function registerF16Backend(gpu: GpuLike): void {
  const WebGPUBackend = webgpuBackendClass();
  tf.removeBackend('webgpu');
  tf.registerBackend(
    'webgpu',
    async () => {
      const adapter = await gpu.requestAdapter({ powerPreference: tf.env().get('WEBGPU_USE_LOW_POWER_GPU') ? 'low-power' : 'high-performance' });
      if (!adapter) throw new Error('no GPU adapter');
      // what tfjs's own factory requests (tfjs-backend-webgpu base.ts), plus shader-f16
      const requiredFeatures = ['timestamp-query', 'bgra8unorm-storage', 'shader-f16'].filter((f) => adapter.features.has(f));
      if (!requiredFeatures.includes('shader-f16')) throw new Error('the adapter has no shader-f16');
      const l = adapter.limits;
      const requiredLimits: Record<string, number> = {};
      for (const k of ['maxComputeWorkgroupStorageSize', 'maxComputeWorkgroupsPerDimension', 'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupSizeX', 'maxComputeInvocationsPerWorkgroup']) requiredLimits[k] = l[k]!;
      const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
      const create = device.createShaderModule.bind(device);
      device.createShaderModule = (desc) => create(desc.code.includes(F16_MARKER) ? { ...desc, code: `enable f16;\n${desc.code}` } : desc);
      return new WebGPUBackend(device, adapter.info) as tf.KernelBackend;
    },
    3,
  );
}

export interface WebgpuKernelSetup {
  precision: Precision;
  /** the matmul route and why, for the backend log */
  log: string[];
  check?: StartupCheck;
}

/** Output rows per thread of the tiled matmul (64×64 tiles; see docs/gpu.md "Mixed precision"). */
export const ROWS_PER_THREAD = 4;

/**
 * After tf.setBackend('webgpu'): registers the f16 tiled matmul (mixed) or, for fp32, the tiled
 * matmul when `matmul` says so (auto: when it beats tfjs's kernel in the start-up check).
 */
export async function setupWebgpuKernels(precision: Precision, matmul: WebgpuMatmulChoice, software: boolean): Promise<WebgpuKernelSetup> {
  if (precision === 'mixed') {
    const bad = await selfTest({ rowsPerThread: ROWS_PER_THREAD, f16: true });
    if (bad) throw new Error(`mixed precision: the f16 matmul failed its start-up self-test (${bad})`);
    registerTiledMatMul({ cfg: { rowsPerThread: ROWS_PER_THREAD, f16: true }, minWork: 0 });
    return { precision, log: ['webgpu: mixed precision: f16 tiled matmul (f32 accumulation) for BatchMatMul/_FusedMatMul; tfjs\'s kernel for the products it does not take'] };
  }
  if (matmul === 'tfjs') return { precision, log: ["webgpu: tfjs's matmul kernels (fp32)"] };
  // a CPU's timings say nothing about a GPU, and the check takes seconds there
  if (software && matmul === 'auto') return { precision, log: ["webgpu: software adapter: the fp32 matmul start-up check is skipped, tfjs's kernel stays (TTC_WEBGPU_MATMUL=tiled forces the tiled one)"] };
  const cfg = { rowsPerThread: ROWS_PER_THREAD, f16: false } as const;
  const bad = await selfTest(cfg);
  if (bad) return { precision, log: [`webgpu: the fp32 tiled matmul failed its start-up self-test (${bad}): tfjs's kernel stays`] };
  if (matmul === 'tiled') {
    registerTiledMatMul({ cfg, minWork: 0 });
    return { precision, log: ['webgpu: fp32 tiled matmul (forced)'] };
  }
  const check = await startupCheck(software, cfg);
  const detail = check.ratios.map((r) => `${r.shape} ${(r.tfjsMs / r.tiledMs).toFixed(2)}×`).join(', ');
  if (check.use) registerTiledMatMul({ cfg, minWork: 0 });
  return { precision, check, log: [`webgpu: fp32 tiled matmul ${check.use ? 'beats' : 'does not beat'} tfjs's in the start-up check (speed-up ${detail}): ${check.use ? 'using it' : "keeping tfjs's"}`] };
}

/**
 * One odd-shaped product (transposed B, bias, edges in M, N and K) against tfjs's own webgpu kernel;
 * undefined when it agrees within the program's error bound (f16: two operand roundings of 2⁻¹¹,
 * tests/kit/matmul-check.ts), else what went wrong. A driver that miscompiles the program is caught here.
 */
async function selfTest(cfg: TileConfig): Promise<string | undefined> {
  try {
    const outs = tf.tidy(() => {
      const [a, b, bias] = [tf.randomNormal([70, 37], 0, 1, 'float32', 11), tf.randomNormal([45, 37], 0, 1, 'float32', 12), tf.randomNormal([45], 0, 1, 'float32', 13)];
      return [matMulWith(cfg, a, b, false, true, bias), matMulWith('tfjs', a, b, false, true, bias), matMulWith('tfjs', tf.abs(a), tf.abs(b), false, true, tf.abs(bias))];
    });
    const [x, ref, p] = (await Promise.all(outs.map((t) => t.data()))) as Float32Array[];
    tf.dispose(outs);
    // both sides' fp32 sums are within 37·2⁻²⁴ of exact; f16 adds two operand roundings
    const rel = (cfg.f16 ? 2 * 2 ** -11 : 0) + 2 * 37 * 2 ** -24;
    for (let i = 0; i < ref!.length; i++) {
      if (!(Math.abs(x![i]! - ref![i]!) <= rel * p![i]! + 1e-6)) return `element ${i}: ${x![i]} vs ${ref![i]}`;
    }
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message.split('\n')[0] : String(e);
  }
}
