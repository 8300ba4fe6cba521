/**
 * Tiled WGSL matmul for the tfjs webgpu backend, fp32 and mixed precision (issue 14, items 1 and 3).
 *
 * One program family for `BatchMatMul` and `_FusedMatMul` (bias only): a 16×16 workgroup computes a
 * TM×64 output tile (TM = 64 or 128: 4×4 or 8×4 outputs per thread), walking K in steps of 16 through
 * workgroup memory. Operands are read with vec4 loads along their contiguous dimension whenever that
 * dimension is a multiple of 4 — transposeA/B included, so a transposed operand is never
 * materialised — else with scalar loads; edges (M, N, K not multiples of the tile) are zero-filled.
 *
 * `f16: true` (model.precision = mixed) stores the tiles as f16 in workgroup memory (the operands are
 * rounded to f16 when loaded) and multiplies-accumulates in f32: a product of two f16 values is exact
 * in f32, so the only rounding beyond fp32's is the operands' (≤ 2⁻¹¹ relative), as on tensor cores.
 * An operand beyond f16's range (|x| > 65504, inf, NaN) makes its whole output tile +inf, so that a
 * loss-scale overflow is seen (ml/train/loss-scale.ts) instead of being an undefined conversion.
 *
 * Anything else — other dtypes, activations, PReLU, bias not of N elements, batch broadcasting other
 * than one side being a single matrix, dispatches beyond the device limit — goes to tfjs's own
 * kernel, per call.
 */
import { createRequire } from 'node:module';

import { tf } from '../tf.ts';

const require = createRequire(import.meta.url);

export interface TileConfig {
  /** output rows per thread: 4 → 64×64 tiles, 8 → 128×64 tiles */
  rowsPerThread: 4 | 8;
  /** f16 operands in workgroup memory, f32 accumulation */
  f16: boolean;
}

interface TensorInfo {
  dataId: object;
  shape: number[];
  dtype: string;
}
interface UniformData {
  type: 'int32' | 'float32';
  data: number[];
}
/** The parts of tfjs's WebGPUBackend this module uses. */
export interface WebGPUBackendLike {
  runWebGPUProgram(program: object, inputs: TensorInfo[], dtype: string, uniforms?: UniformData[]): TensorInfo;
  disposeData(dataId: object): boolean;
  device: { limits: { maxComputeWorkgroupsPerDimension: number } };
}

/** A program that needs `enable f16;` says so with this comment (ml/kernels/webgpu-device.ts prepends it). */
export const F16_MARKER = '// ttc:enable-f16';

const TN = 64;
const TK = 16;
const WG = 16;
/** f16's largest finite value, as f32 bits: anything above (inf and NaN included) is an overflow */
const F16_MAX_BITS = '0x477fe000u';

/** The program object tfjs's runWebGPUProgram compiles (webgpu_program.ts: WebGPUProgram). */
export class TiledMatMulProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [2], y: [1], z: [0] };
  dispatch: [number, number, number];
  variableNames: string[];
  variableComponents: number[];
  workgroupSize: [number, number, number] = [WG, WG, 1];
  uniforms = 'dimM : i32, dimN : i32, dimK : i32, strideA : i32, strideB : i32,';
  outputComponent = 1;
  private readonly tm: number;

  constructor(
    batch: number,
    readonly m: number,
    readonly n: number,
    readonly k: number,
    readonly transposeA: boolean,
    readonly transposeB: boolean,
    readonly hasBias: boolean,
    readonly cfg: TileConfig,
  ) {
    this.tm = cfg.rowsPerThread * WG;
    this.outputShape = [batch, m, n];
    this.dispatch = [Math.ceil(n / TN), Math.ceil(m / this.tm), batch];
    this.variableNames = hasBias ? ['A', 'B', 'bias'] : ['A', 'B'];
    // vec4 loads need the contiguous dimension to be a multiple of 4 (then a vec4 is all in or all out)
    const vecA = (transposeA ? m : k) % 4 === 0;
    const vecB = (transposeB ? k : n) % 4 === 0;
    this.variableComponents = [vecA ? 4 : 1, vecB ? 4 : 1, ...(hasBias ? [1] : [])];
    this.shaderKey = `ttcTiledMatMul_${cfg.rowsPerThread}_${cfg.f16 ? 'f16' : 'f32'}_${transposeA}_${transposeB}_${hasBias}_${vecA}_${vecB}`;
  }

  getUserCode(): string {
    const { tm } = this;
    const rm = this.cfg.rowsPerThread;
    const f16 = this.cfg.f16;
    const T = f16 ? 'f16' : 'f32';
    const [vecA, vecB] = this.variableComponents;
    const tm4 = tm / 4;
    const tn4 = TN / 4;
    // Element (row r, col c) of a logical [rows, cols] operand stored row-major, batch offset `base`.
    // loadX4 returns 4 consecutive elements along the stored contiguous dimension; zero outside.
    const load4 = (name: string, vec: number, rowsU: string, colsU: string) =>
      vec === 4
        ? `fn load${name}4(base : i32, r : i32, c : i32) -> vec4<f32> {
             if (r >= ${rowsU} || c >= ${colsU}) { return vec4<f32>(0.0); }
             return ${name}[(base + r * ${colsU} + c) / 4];
           }`
        : `fn load${name}4(base : i32, r : i32, c : i32) -> vec4<f32> {
             var v = vec4<f32>(0.0);
             if (r >= ${rowsU}) { return v; }
             for (var i = 0; i < 4; i++) { if (c + i < ${colsU}) { v[i] = ${name}[base + r * ${colsU} + c + i]; } }
             return v;
           }`;
    // stored shapes: A is [M, K] or (transposeA) [K, M]; B is [K, N] or (transposeB) [N, K]
    const aRows = this.transposeA ? 'uniforms.dimK' : 'uniforms.dimM';
    const aCols = this.transposeA ? 'uniforms.dimM' : 'uniforms.dimK';
    const bRows = this.transposeB ? 'uniforms.dimN' : 'uniforms.dimK';
    const bCols = this.transposeB ? 'uniforms.dimK' : 'uniforms.dimN';
    const cvt = f16 ? `toF16` : `vec4<f32>`;
    // A tile → As[k][m] (vec4 over m), B tile → Bs[k][n] (vec4 over n)
    const aVecs = (tm * TK) / 4;
    const bVecs = (TN * TK) / 4;
    const loadA = this.transposeA
      ? // stored [K, M]: a vec4 is 4 m's at one k
        `for (var v = i32(localIndex); v < ${aVecs}; v += ${WG * WG}) {
           let kk = v / ${tm4}; let mq = v % ${tm4};
           As[kk * ${tm4} + mq] = ${cvt}(loadA4(baseA, t + kk, row0 + mq * 4));
         }`
      : // stored [M, K]: a vec4 is 4 k's at one m
        `for (var v = i32(localIndex); v < ${aVecs}; v += ${WG * WG}) {
           let mm = v / ${TK / 4}; let kq = v % ${TK / 4};
           let x = ${cvt}(loadA4(baseA, row0 + mm, t + kq * 4));
           for (var c = 0; c < 4; c++) { As[(kq * 4 + c) * ${tm4} + mm / 4][mm % 4] = x[c]; }
         }`;
    const loadB = this.transposeB
      ? // stored [N, K]: a vec4 is 4 k's at one n
        `for (var v = i32(localIndex); v < ${bVecs}; v += ${WG * WG}) {
           let nn = v / ${TK / 4}; let kq = v % ${TK / 4};
           let x = ${cvt}(loadB4(baseB, col0 + nn, t + kq * 4));
           for (var c = 0; c < 4; c++) { Bs[(kq * 4 + c) * ${tn4} + nn / 4][nn % 4] = x[c]; }
         }`
      : `for (var v = i32(localIndex); v < ${bVecs}; v += ${WG * WG}) {
           let kk = v / ${tn4}; let nq = v % ${tn4};
           Bs[kk * ${tn4} + nq] = ${cvt}(loadB4(baseB, t + kk, col0 + nq * 4));
         }`;
    const overflowDecl = f16
      ? `var<workgroup> overflow : atomic<u32>;
         // rounds to f16; an operand beyond f16's range marks the tile (see the file's header)
         fn toF16(x : vec4<f32>) -> vec4<f16> {
           let bits = bitcast<vec4<u32>>(x) & vec4<u32>(0x7fffffffu);
           if (any(bits > vec4<u32>(${F16_MAX_BITS}))) {
             atomicStore(&overflow, 1u);
             return vec4<f16>(0.0h);
           }
           return vec4<f16>(x);
         }`
      : '';
    const unroll = Array.from({ length: rm / 4 }, (_, r) => r);
    return `
      ${f16 ? F16_MARKER : ''}
      var<workgroup> As : array<vec4<${T}>, ${(tm * TK) / 4}>;
      var<workgroup> Bs : array<vec4<${T}>, ${(TN * TK) / 4}>;
      ${overflowDecl}
      ${load4('A', vecA!, aRows, aCols)}
      ${load4('B', vecB!, bRows, bCols)}

      fn main() {
        let tx = i32(localId.x);
        let ty = i32(localId.y);
        let batch = i32(workgroupId.z);
        let row0 = i32(workgroupId.y) * ${tm};
        let col0 = i32(workgroupId.x) * ${TN};
        let baseA = batch * uniforms.strideA;
        let baseB = batch * uniforms.strideB;
        ${f16 ? 'if (localIndex == 0u) { atomicStore(&overflow, 0u); }\n        workgroupBarrier();' : ''}
        var acc : array<vec4<f32>, ${rm}>;
        for (var t = 0; t < uniforms.dimK; t += ${TK}) {
          ${loadA}
          ${loadB}
          workgroupBarrier();
          for (var kk = 0; kk < ${TK}; kk++) {
            let b = vec4<f32>(Bs[kk * ${tn4} + tx]);
            ${unroll
              .map(
                (r) => `{
              let a = vec4<f32>(As[kk * ${tm4} + ty * ${rm / 4} + ${r}]);
              acc[${r * 4 + 0}] = fma(vec4<f32>(a.x), b, acc[${r * 4 + 0}]);
              acc[${r * 4 + 1}] = fma(vec4<f32>(a.y), b, acc[${r * 4 + 1}]);
              acc[${r * 4 + 2}] = fma(vec4<f32>(a.z), b, acc[${r * 4 + 2}]);
              acc[${r * 4 + 3}] = fma(vec4<f32>(a.w), b, acc[${r * 4 + 3}]);
            }`,
              )
              .join('\n')}
          }
          workgroupBarrier();
        }
        ${f16 ? 'let bad = atomicLoad(&overflow) != 0u;' : ''}
        let outBase = batch * uniforms.dimM * uniforms.dimN;
        for (var i = 0; i < ${rm}; i++) {
          let row = row0 + ty * ${rm} + i;
          if (row >= uniforms.dimM) { break; }
          for (var j = 0; j < 4; j++) {
            let col = col0 + tx * 4 + j;
            if (col < uniforms.dimN) {
              var x = acc[i][j];
              ${this.hasBias ? 'x = x + bias[col];' : ''}
              ${f16 ? 'if (bad) { x = uniforms.INFINITY; }' : ''}
              result[outBase + row * uniforms.dimN + col] = x;
            }
          }
        }
      }
    `;
  }
}

// ---------- kernels ----------

type KernelFunc = (args: { inputs: Record<string, TensorInfo | undefined>; backend: unknown; attrs?: Record<string, unknown> }) => TensorInfo | TensorInfo[];

export interface MatMulCall {
  a: TensorInfo;
  b: TensorInfo;
  transposeA: boolean;
  transposeB: boolean;
  bias?: TensorInfo;
}

const size = (shape: number[]) => shape.reduce((x, y) => x * y, 1);

/** The product's dimensions if the tiled program can run it, else the reason it cannot. */
export function plan(c: MatMulCall, maxDispatch = 65535, rowsPerThread: 4 | 8 = 4): { batch: number; m: number; n: number; k: number; strideA: number; strideB: number; outShape: number[] } | string {
  const { a, b, transposeA, transposeB, bias } = c;
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || (bias && bias.dtype !== 'float32')) return 'not float32';
  if (a.shape.length < 2 || b.shape.length < 2) return 'rank < 2';
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
  const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
  const kb = transposeB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
  const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  if (k !== kb) return 'inner dimensions differ'; // tfjs's kernel throws its own message
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const batchA = size(outerA);
  const batchB = size(outerB);
  let outer: number[];
  if (batchA === batchB && (outerA.length === outerB.length ? outerA.every((d, i) => d === outerB[i]) : batchA === 1)) outer = outerA.length >= outerB.length ? outerA : outerB;
  else if (batchA === 1) outer = outerB;
  else if (batchB === 1) outer = outerA;
  else return 'broadcast batch';
  const batch = Math.max(batchA, batchB);
  if (m * n * batch === 0 || k === 0) return 'empty';
  if (bias && size(bias.shape) !== n) return 'bias not of N elements';
  if (Math.ceil(n / TN) > maxDispatch || Math.ceil(m / (rowsPerThread * WG)) > maxDispatch || batch > maxDispatch) return 'dispatch too large';
  return { batch, m, n, k, strideA: batchA === 1 ? 0 : m * k, strideB: batchB === 1 ? 0 : k * n, outShape: [...outer, m, n] };
}

function reshape(backend: unknown, x: TensorInfo, shape: number[]): TensorInfo {
  return tf.getKernel('Reshape', 'webgpu')!.kernelFunc({ inputs: { x } as never, backend: backend as never, attrs: { shape } }) as TensorInfo;
}

/** Runs the tiled program; null if it cannot (the caller falls back). */
export function runTiled(backend: WebGPUBackendLike, c: MatMulCall, cfg: TileConfig): TensorInfo | null {
  const p = plan(c, backend.device.limits.maxComputeWorkgroupsPerDimension, cfg.rowsPerThread);
  if (typeof p === 'string') return null;
  const prog = new TiledMatMulProgram(p.batch, p.m, p.n, p.k, c.transposeA, c.transposeB, !!c.bias, cfg);
  const inputs = [c.a, c.b, ...(c.bias ? [c.bias] : [])];
  const uniforms: UniformData[] = [{ type: 'int32', data: [p.m] }, { type: 'int32', data: [p.n] }, { type: 'int32', data: [p.k] }, { type: 'int32', data: [p.strideA] }, { type: 'int32', data: [p.strideB] }];
  const out = backend.runWebGPUProgram(prog, inputs, 'float32', uniforms);
  const shaped = reshape(backend, out, p.outShape);
  backend.disposeData(out.dataId);
  return shaped;
}

/** Which products take the tiled program (the rest: tfjs's kernel). */
export interface MatMulPolicy {
  cfg: TileConfig;
  /** batch·M·N·K below this stays on tfjs's kernel (fp32 only: mixed precision routes every product it supports) */
  minWork: number;
}

/** Calls per route since registration (for logs, benches and tests). */
export const matmulStats = { tiled: 0, fallback: 0 };

const originals = new Map<string, tf.KernelConfig>();
let active: MatMulPolicy | null = null;

export function activeMatMul(): MatMulPolicy | null {
  return active;
}

/** The f16 matmul is registered: this process trains in mixed precision (trainers scale the loss). */
export function mixedPrecisionActive(): boolean {
  return active?.cfg.f16 === true && tf.getBackend() === 'webgpu';
}

/** tfjs's own kernels (as registered before registerTiledMatMul), for benches and fallbacks. */
export function originalKernel(name: 'BatchMatMul' | '_FusedMatMul'): KernelFunc {
  const k = originals.get(name) ?? tf.getKernel(name, 'webgpu');
  if (!k) throw new Error(`webgpu kernel ${name} is not registered`);
  return k.kernelFunc as unknown as KernelFunc;
}

function route(backend: WebGPUBackendLike, c: MatMulCall, policy: MatMulPolicy): TensorInfo | null {
  if (!policy.cfg.f16) {
    const p = plan(c);
    if (typeof p === 'string' || p.batch * p.m * p.n * p.k < policy.minWork) return null;
  }
  return runTiled(backend, c, policy.cfg);
}

/** Re-registers BatchMatMul and _FusedMatMul on webgpu with the tiled program (tfjs's kernel per call as fallback). */
export function registerTiledMatMul(policy: MatMulPolicy): void {
  unregisterTiledMatMul();
  for (const name of ['BatchMatMul', '_FusedMatMul'] as const) {
    const orig = tf.getKernel(name, 'webgpu');
    if (!orig) throw new Error(`webgpu kernel ${name} is not registered`);
    originals.set(name, orig);
  }
  const batchMatMul: KernelFunc = (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const out = route(args.backend as WebGPUBackendLike, { a, b, transposeA, transposeB }, policy);
    if (out) {
      matmulStats.tiled++;
      return out;
    }
    matmulStats.fallback++;
    return originalKernel('BatchMatMul')(args);
  };
  const fusedMatMul: KernelFunc = (args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, TensorInfo | undefined>;
    const { transposeA, transposeB, activation } = args.attrs as { transposeA: boolean; transposeB: boolean; activation?: string | null };
    const plain = !preluActivationWeights && (activation == null || activation === 'linear');
    const out = plain ? route(args.backend as WebGPUBackendLike, { a: a!, b: b!, transposeA, transposeB, bias }, policy) : null;
    if (out) {
      matmulStats.tiled++;
      return out;
    }
    matmulStats.fallback++;
    return originalKernel('_FusedMatMul')(args);
  };
  for (const [name, kernelFunc] of [['BatchMatMul', batchMatMul], ['_FusedMatMul', fusedMatMul]] as const) {
    tf.unregisterKernel(name, 'webgpu');
    tf.registerKernel({ kernelName: name, backendName: 'webgpu', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  }
  active = policy;
}

/** Puts tfjs's own kernels back. */
export function unregisterTiledMatMul(): void {
  for (const cfg of originals.values()) {
    tf.unregisterKernel(cfg.kernelName, cfg.backendName);
    tf.registerKernel(cfg);
  }
  originals.clear();
  active = null;
}

// ---------- direct calls (benches, tests, the start-up check) ----------

/** The active webgpu backend object (tfjs's WebGPUBackend). */
export function webgpuBackend(): WebGPUBackendLike {
  if (tf.getBackend() !== 'webgpu') throw new Error(`the active backend is ${tf.getBackend()}, not webgpu`);
  return tf.backend() as unknown as WebGPUBackendLike;
}

/** a·b on webgpu with one route: 'tfjs' (its own kernel), or the tiled program with `cfg`. */
export function matMulWith(route_: 'tfjs' | TileConfig, a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false, bias?: tf.Tensor): tf.Tensor {
  const backend = webgpuBackend();
  const info = (t: tf.Tensor): TensorInfo => ({ dataId: t.dataId, shape: t.shape, dtype: t.dtype });
  let out: TensorInfo | null;
  if (route_ === 'tfjs') {
    const name = bias ? '_FusedMatMul' : 'BatchMatMul';
    out = originalKernel(name)({ inputs: { a: info(a), b: info(b), ...(bias ? { bias: info(bias) } : {}) }, backend, attrs: { transposeA, transposeB, activation: 'linear' } }) as TensorInfo;
  } else {
    out = runTiled(backend, { a: info(a), b: info(b), transposeA, transposeB, bias: bias && info(bias) }, route_);
    if (!out) throw new Error(`the tiled matmul does not take ${JSON.stringify(a.shape)}·${JSON.stringify(b.shape)} (${String(plan({ a: info(a), b: info(b), transposeA, transposeB, bias: bias && info(bias) }))})`);
  }
  return tf.engine().makeTensorFromTensorInfo(out as never);
}

export interface StartupCheck {
  /** tiled ms / tfjs ms per shape (< 1: the tiled program is faster) */
  ratios: { shape: string; tfjsMs: number; tiledMs: number }[];
  use: boolean;
}

/**
 * Times tfjs's kernel and the fp32 tiled program on a few of the model's product shapes (scaled
 * down on a software adapter) and says whether the tiled one wins on all of them.
 */
export async function startupCheck(software: boolean, cfg: TileConfig, reps = 3): Promise<StartupCheck> {
  const s = software ? 4 : 1; // lavapipe: 1/4 of every dimension
  const shapes: [number, number, number, number, boolean][] = [
    // batch, M, K, N, transposeB: the dense layers (M = B·T) and the per-head scores q·kᵀ
    [1, 4096 / s / s, 768 / s, 3072 / s, false],
    [1, 4096 / s / s, 768 / s, 768 / s, true],
    [96 / s, 128 / s, 64 / s, 128 / s, true],
  ];
  const ratios: StartupCheck['ratios'] = [];
  for (const [batch, m, k, n, tb] of shapes) {
    const a = tf.randomNormal(batch > 1 ? [batch, m, k] : [m, k], 0, 1, 'float32', 1);
    const b = tf.randomNormal(batch > 1 ? (tb ? [batch, n, k] : [batch, k, n]) : tb ? [n, k] : [k, n], 0, 1, 'float32', 2);
    const time = async (r: 'tfjs' | TileConfig) => {
      let best = Infinity;
      for (let i = 0; i <= reps; i++) {
        const t0 = performance.now();
        const c = matMulWith(r, a, b, false, tb);
        await c.data();
        c.dispose();
        if (i > 0) best = Math.min(best, performance.now() - t0); // the first compiles the shader
      }
      return best;
    };
    const tfjsMs = await time('tfjs');
    const tiledMs = await time(cfg);
    ratios.push({ shape: `${batch > 1 ? `${batch}×` : ''}[${m},${k}]·[${k},${n}]${tb ? 'ᵀ' : ''}`, tfjsMs, tiledMs });
    tf.dispose([a, b]);
  }
  return { ratios, use: ratios.every((r) => r.tiledMs < r.tfjsMs) };
}

type WebgpuBackendCtor = new (device: unknown, adapterInfo?: unknown) => unknown;
type WebgpuPackage = { WebGPUBackend: unknown };
let webgpuPackage: WebgpuPackage | undefined;

/**
 * For an entry point that imports the tfjs webgpu package itself (a bundle: bench/gpu.ts): the
 * package is inside the bundle, where require() cannot find it.
 */
export function provideWebgpuPackage(pkg: WebgpuPackage): void {
  webgpuPackage = pkg;
}

/** The WebGPUBackend class of the tfjs webgpu package this process uses (the one ml/backend.ts loads). */
export function webgpuBackendClass(): WebgpuBackendCtor {
  return (webgpuPackage ?? (require('@tensorflow/tfjs-backend-webgpu') as WebgpuPackage)).WebGPUBackend as WebgpuBackendCtor;
}
