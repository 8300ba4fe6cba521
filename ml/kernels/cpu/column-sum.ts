/**
 * A faster `Sum` for reductions over the leading axes (`sum(dy, 0)` of an [N, D] tensor: every
 * dense layer's bias gradient, LayerNorm-free broadcast gradients). tfjs-wasm transposes the input
 * and then reduces along rows, single-threaded (~3 ms for [1024, 256], 19% of an L step); this
 * adds rows into a float64 accumulator in memory order instead. Every other Sum (inner axes,
 * int32, empty) goes to the backend's own kernel. Checked against that kernel when installed.
 */
import { tf } from '../../tf.ts';
import { ioFor, sizeOf } from './io.ts';
import { isReplaced, replaceKernel, restoreKernel } from './replace.ts';

type TensorInfo = tf.TensorInfo;
type Args = { inputs: { x: TensorInfo }; backend: unknown; attrs?: { axis?: number | number[]; keepDims?: boolean } };

const status = new Map<string, string>();
export const columnSumStats = { fast: 0, fallback: 0 };

/** k when `axis` is exactly the leading axes [0, k) of a rank-`rank` tensor with k < rank, else 0. */
export function leadingAxes(axis: number | number[] | undefined, rank: number): number {
  if (axis === undefined) return 0;
  const axes = [...new Set((Array.isArray(axis) ? axis : [axis]).map((a) => (a < 0 ? a + rank : a)))].sort((a, b) => a - b);
  if (axes.length === 0 || axes.length >= rank || axes.some((a, i) => a !== i)) return 0;
  return axes.length;
}

function makeSum(backendName: string, original: tf.KernelFunc): tf.KernelFunc {
  return ((args: Args) => {
    const { x } = args.inputs;
    const k = x.dtype === 'float32' ? leadingAxes(args.attrs?.axis, x.shape.length) : 0;
    const n = sizeOf(x.shape);
    if (k === 0 || n === 0) {
      columnSumStats.fallback++;
      return original(args as unknown as Parameters<tf.KernelFunc>[0]);
    }
    columnSumStats.fast++;
    const rest = x.shape.slice(k);
    const inner = sizeOf(rest);
    const outer = n / inner;
    const io = ioFor(backendName, args.backend);
    const out = io.alloc(args.attrs?.keepDims ? [...x.shape.slice(0, k).map(() => 1), ...rest] : rest);
    const X = io.f32(x);
    const acc = new Float64Array(inner);
    for (let r = 0; r < outer; r++) {
      const o = r * inner;
      for (let c = 0; c < inner; c++) acc[c] += X[o + c];
    }
    out.view().set(acc);
    return out.info;
  }) as unknown as tf.KernelFunc;
}

/** Max |a − b| over the cases, with this backend's Sum as now registered vs a float64 reference. */
function check(): number {
  let worst = 0;
  for (const [shape, axis, keep] of [[[37, 19], 0, false], [[5, 3, 7], [1, 0], true], [[4, 6], -1, false], [[9, 1], [0], false]] as const) {
    const n = sizeOf(shape);
    const v = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7) * 3);
    const got = tf.tidy(() => tf.sum(tf.tensor(v, shape as unknown as number[]), axis as number | number[], keep).dataSync());
    const k = leadingAxes(axis as number | number[], shape.length);
    const inner = k ? sizeOf(shape.slice(k)) : 1;
    const want = new Float64Array(k ? inner : n / shape[shape.length - 1]);
    if (k) for (let i = 0; i < n; i++) want[i % inner] += v[i];
    else for (let i = 0; i < n; i++) want[Math.floor(i / shape[shape.length - 1])] += v[i];
    if (got.length !== want.length) return Infinity;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
  }
  return worst;
}

/**
 * Re-registers `Sum` on `backendName` (the active backend) with the leading-axes path; keeps the
 * original if the check disagrees with a float64 reference by more than float32 rounding.
 * Idempotent. Returns a line for the backend log.
 */
export function installColumnSum(backendName: string): string {
  const line = install(backendName);
  status.set(backendName, line);
  return line;
}

/** What the last installColumnSum on this backend did (a log line), or undefined. */
export function columnSumInfo(backendName: string): string | undefined {
  return status.get(backendName);
}

function install(backendName: string): string {
  if (isReplaced('Sum', backendName)) return status.get(backendName) ?? `${backendName}: Sum over leading axes: JS column loop`;
  if (!replaceKernel('Sum', backendName, (orig) => makeSum(backendName, orig))) return `${backendName}: no Sum kernel to replace`;
  const worst = check();
  if (!(worst <= 1e-4)) {
    restoreKernel('Sum', backendName);
    return `${backendName}: Sum over leading axes kept tfjs's kernel (check off by ${worst})`;
  }
  return `${backendName}: Sum over leading axes: JS column loop (float64 accumulators)`;
}

/** Puts the backend's own Sum back. */
export function uninstallColumnSum(backendName: string): void {
  restoreKernel('Sum', backendName);
  status.delete(backendName);
}
