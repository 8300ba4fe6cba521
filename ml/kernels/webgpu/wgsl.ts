/**
 * WGSL pieces shared by the fused kernels: the workgroup size for a row width, workgroup
 * reductions, the entry point's builtins, the column reduction of per-block partial sums, and an
 * accurate erfc (WGSL has none).
 */
import type { Kernel } from './dispatch.ts';

/** Threads per workgroup for rows of `width` columns (a power of two: the reductions halve it). */
export function workgroupFor(width: number): number {
  return width >= 2048 ? 256 : width >= 512 ? 128 : 64;
}

/** Entry point parameters: linear workgroup id via GROUP_ID (dispatch.ts), local index `lid`. */
export const ENTRY = `@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32`;

/**
 * `fn NAME(v: T, lid: u32) -> T`: the workgroup's combined value, returned to every thread
 * (tree reduction in workgroup memory; call it from uniform control flow). Needs const WG.
 */
export function workgroupReduce(name: string, type: 'f32' | 'vec2<f32>', combine: (a: string, b: string) => string): string {
  return `
var<workgroup> ${name}_buf: array<${type}, WG>;
fn ${name}(v: ${type}, lid: u32) -> ${type} {
  ${name}_buf[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { ${name}_buf[lid] = ${combine(`${name}_buf[lid]`, `${name}_buf[lid + s]`)}; }
    workgroupBarrier();
  }
  let r = ${name}_buf[0];
  workgroupBarrier(); // every thread has read r before the buffer is reused
  return r;
}`;
}

/**
 * erfc(x) with relative error ≤ 1.2e-7 for every x (Numerical Recipes' Chebyshev fit `erfcc`;
 * 1.05e-7 measured in double against math.erfc on [-10, 10]). Relative accuracy of erfc keeps the
 * GELU's Φ(u) = erfc(−u/√2)/2 accurate for large negative u, where 1 + erf(x) would cancel.
 */
export const ERFC = `
fn erfc_(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
          t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  let r = t * exp(-z * z + p);
  return select(2.0 - r, r, x >= 0.0);
}`;

/**
 * Second stage of a column reduction: `outs[j][c] = Σ_p parts[j][p·D + c]` for j < names.length,
 * one thread per column (the first stage leaves one row of partial sums per block of rows).
 */
export function columnSumKernel(d: number, names: string[]): Kernel {
  return {
    name: `ttc_colsum_${names.length}_${d}`,
    outputs: names.map((n) => ({ name: n, type: 'f32' })),
    inputs: names.map((n) => ({ name: `${n}_parts`, type: 'f32' })),
    uniforms: [{ name: 'parts', type: 'i32' }],
    body: `
const D: i32 = ${d};
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = i32(gid.x);
  if (c >= D) { return; }
  ${names.map((n) => `var s_${n} = 0.0;`).join(' ')}
  for (var p = 0; p < u.parts; p++) {
    ${names.map((n) => `s_${n} += ${n}_parts[p * D + c];`).join(' ')}
  }
  ${names.map((n) => `${n}[c] = s_${n};`).join(' ')}
}`,
  };
}

/** Row blocks for a first-stage column reduction over `rows` rows: [rows per block, blocks]. */
export function rowBlocks(rows: number, maxBlocks = 256): [number, number] {
  const per = Math.max(1, Math.ceil(rows / maxBlocks));
  return [per, Math.ceil(rows / per)];
}

/** Workgroups over `d` columns for columnSumKernel. */
export const columnGroups = (d: number): [number, number, number] => [Math.ceil(d / 64), 1, 1];

/**
 * The widest rows the row-block backward kernels take: each thread keeps its columns' partial sums
 * in a private array of ceil(cols / workgroup) floats (64 at this width); wider rows fall back to
 * the composite rather than spill.
 */
export const MAX_COLS = 16384;

/** int32 indexing: the kernels index flat [rows, cols] buffers with i32. (Empty shapes are left to the composite.) */
export const fitsI32 = (shape: number[]): boolean => shape.reduce((a, b) => a * b, 1) < 2 ** 31 - 1;
