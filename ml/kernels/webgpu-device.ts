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
import { F16_MARKER, registerTiledMatMul, startupCheck, webgpuBackendClass, type StartupCheck } from './webgpu-matmul.ts';

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
    registerTiledMatMul({ cfg: { rowsPerThread: ROWS_PER_THREAD, f16: true }, minWork: 0 });
    return { precision, log: ['webgpu: mixed precision: f16 tiled matmul (f32 accumulation) for BatchMatMul/_FusedMatMul; tfjs\'s kernel for the products it does not take'] };
  }
  if (matmul === 'tfjs') return { precision, log: ["webgpu: tfjs's matmul kernels (fp32)"] };
  const cfg = { rowsPerThread: ROWS_PER_THREAD, f16: false } as const;
  if (matmul === 'tiled') {
    registerTiledMatMul({ cfg, minWork: 0 });
    return { precision, log: ['webgpu: fp32 tiled matmul (forced)'] };
  }
  // a CPU's timings say nothing about a GPU, and the check takes seconds there
  if (software) return { precision, log: ["webgpu: software adapter: the fp32 matmul start-up check is skipped, tfjs's kernel stays (TTC_WEBGPU_MATMUL=tiled forces the tiled one)"] };
  const check = await startupCheck(software, cfg);
  const detail = check.ratios.map((r) => `${r.shape} ${(r.tfjsMs / r.tiledMs).toFixed(2)}×`).join(', ');
  if (check.use) registerTiledMatMul({ cfg, minWork: 0 });
  return { precision, check, log: [`webgpu: fp32 tiled matmul ${check.use ? 'beats' : 'does not beat'} tfjs's in the start-up check (speed-up ${detail}): ${check.use ? 'using it' : "keeping tfjs's"}`] };
}
