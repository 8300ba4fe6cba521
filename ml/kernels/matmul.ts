/**
 * tfjs kernel functions for `BatchMatMul` and `_FusedMatMul` that run the product in onnxruntime
 * (MLAS GEMM, multi-threaded) on tensors of the `cpu` or `wasm` backend. Anything they do not
 * handle (non-float32, empty, tfjs-only broadcasting, prelu, unusual bias shapes, tiny products on
 * wasm, any onnxruntime error) goes to the backend's original kernel, so results and error
 * messages stay tfjs's own there.
 */
import type { tf as TF } from '../tf.ts';
import type { NodeSpec } from './onnx-graph.ts';
import { session, tensor, type GraphSpec, type OrtTensor } from './ort.ts';

type TensorInfo = TF.TensorInfo;
type KernelFunc = TF.KernelFunc;

/** What the kernels need from a backend instance (the cpu and wasm backends differ here). */
interface BackendIO {
  /** The float32 values of `t`, as a view (no copy) where the backend allows. */
  input(t: TensorInfo): Float32Array;
  /** Allocates the output; `view()` is taken after every allocation of the call is done. */
  output(shape: number[]): { info: TensorInfo; view(): Float32Array; discard(): void };
}

/* eslint-disable @typescript-eslint/no-explicit-any */
/**
 * onnxruntime-node's binding refuses typed arrays over a SharedArrayBuffer ("Invalid argument":
 * Node 20's N-API cannot read their memory), and the trainer's weight tensors are views of its
 * shared master weights: without a private copy every weight product fell back to tfjs's own
 * kernel (BERT-base on cpu: 39 s of a 48 s one-layer step). One copy per weight array, kept while
 * that tensor lives (the trainer replaces the views after every update, so a copy never goes stale).
 */
const privateCopies = new WeakMap<Float32Array, Float32Array>();

export function unshared(values: Float32Array): Float32Array {
  if (!(values.buffer instanceof SharedArrayBuffer)) return values;
  let copy = privateCopies.get(values);
  if (!copy) privateCopies.set(values, (copy = new Float32Array(values)));
  return copy;
}

function cpuIO(backend: any): BackendIO {
  return {
    input: (t) => unshared(backend.data.get(t.dataId).values as Float32Array),
    output(shape) {
      const values = new Float32Array(sizeOf(shape));
      let info: TensorInfo | null = null;
      return {
        get info() {
          info ??= backend.makeTensorInfo(shape, 'float32', values) as TensorInfo;
          return info;
        },
        view: () => values,
        discard: () => {
          if (info) backend.disposeIntermediateTensorInfo(info);
        },
      };
    },
  };
}

function wasmIO(backend: any): BackendIO {
  return {
    input: (t) => backend.typedArrayFromHeap(t) as Float32Array,
    output(shape) {
      const info = backend.makeOutput(shape, 'float32') as TensorInfo;
      return {
        info,
        // a fresh view: allocations can grow (and so detach) the wasm heap
        view: () => backend.typedArrayFromHeap(info) as Float32Array,
        discard: () => backend.disposeData(info.dataId),
      };
    },
  };
}
/* eslint-enable @typescript-eslint/no-explicit-any */

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** numpy broadcasting, as tfjs and ONNX both define it (matMul's batch dims, ort-ops' element-wise operands); null where the shapes do not broadcast. */
export function broadcastShape(a: readonly number[], b: readonly number[]): number[] | null {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const x = a[a.length - r + i] ?? 1;
    const y = b[b.length - r + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return null;
    out.push(x === 1 ? y : x);
  }
  return out;
}

export interface Plan {
  /** rank of the onnxruntime graph (2 or 3) */
  rank: 2 | 3;
  aDims: number[];
  bDims: number[];
  yDims: number[];
  /** the tfjs output shape */
  outShape: number[];
  /** multiply-adds */
  work: number;
  n: number;
}

/**
 * How to run a tfjs matMul of these shapes as a rank-2 or rank-3 onnxruntime MatMul, or null for
 * cases left to the original kernel. Batch dims are flattened as tfjs's own kernels do; tfjs
 * requires batchA == batchB or one of them 1 for a correct result, and so do we.
 */
export function planMatMul(aShape: readonly number[], bShape: readonly number[], tA: boolean, tB: boolean): Plan | null {
  const ra = aShape.length;
  const rb = bShape.length;
  if (ra < 2 || rb < 2) return null;
  const k = tA ? aShape[ra - 2] : aShape[ra - 1];
  if (k !== (tB ? bShape[rb - 1] : bShape[rb - 2])) return null;
  const m = tA ? aShape[ra - 1] : aShape[ra - 2];
  const n = tB ? bShape[rb - 2] : bShape[rb - 1];
  const outerA = aShape.slice(0, -2);
  const outerB = bShape.slice(0, -2);
  const batchA = sizeOf(outerA);
  const batchB = sizeOf(outerB);
  const outer = broadcastShape(outerA, outerB);
  if (!outer) return null;
  const batch = Math.max(batchA, batchB);
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) return null;
  if (sizeOf(outer) !== batch) return null;
  if (m * n * k * batch === 0) return null;
  const a2 = tA ? [k, m] : [m, k];
  const b2 = tB ? [n, k] : [k, n];
  const outShape = [...outer, m, n];
  const work = batch * m * n * k;
  if (batch === 1) return { rank: 2, aDims: a2, bDims: b2, yDims: [m, n], outShape, work, n };
  if (batchB === 1 && !tA) {
    // [batch, m, k] x [k, n] is one [batch*m, k] x [k, n] product: one big GEMM instead of many
    return { rank: 2, aDims: [batchA * m, k], bDims: b2, yDims: [batchA * m, n], outShape, work, n };
  }
  return { rank: 3, aDims: [batchA, ...a2], bDims: [batchB, ...b2], yDims: [batch, m, n], outShape, work, n };
}

export type Activation = 'linear' | 'relu' | 'elu' | 'relu6' | 'leakyrelu' | 'sigmoid';

function activationNodes(act: Activation, x: string, y: string, alpha: number): NodeSpec[] {
  switch (act) {
    case 'relu':
      return [{ op: 'Relu', inputs: [x], outputs: [y] }];
    case 'elu':
      return [{ op: 'Elu', inputs: [x], outputs: [y], attrs: { alpha: { float: 1 } } }];
    case 'sigmoid':
      return [{ op: 'Sigmoid', inputs: [x], outputs: [y] }];
    case 'leakyrelu':
      return [{ op: 'LeakyRelu', inputs: [x], outputs: [y], attrs: { alpha: { float: alpha } } }];
    case 'relu6':
      return [
        { op: 'Constant', inputs: [], outputs: ['c0'], attrs: { value_float: { float: 0 } } },
        { op: 'Constant', inputs: [], outputs: ['c6'], attrs: { value_float: { float: 6 } } },
        { op: 'Clip', inputs: [x, 'c0', 'c6'], outputs: [y] },
      ];
    default:
      return [{ op: 'Identity', inputs: [x], outputs: [y] }];
  }
}

interface Epilogue {
  bias: boolean;
  act: Activation;
  alpha: number;
}

function graph(rank: 2 | 3, tA: boolean, tB: boolean, ep: Epilogue): GraphSpec {
  const mm: NodeSpec = {
    op: 'FusedMatMul',
    domain: 'com.microsoft',
    inputs: ['A', 'B'],
    outputs: ['P'],
    attrs: { transA: tA ? 1 : 0, transB: tB ? 1 : 0, alpha: { float: 1 } },
  };
  const nodes: NodeSpec[] = [mm];
  let last = 'P';
  if (ep.bias) {
    nodes.push({ op: 'Add', inputs: ['P', 'C'], outputs: ['S'] });
    last = 'S';
  }
  if (ep.act === 'linear' && last === 'P') mm.outputs = ['Y'];
  else if (ep.act === 'linear') nodes[nodes.length - 1].outputs = ['Y'];
  else nodes.push(...activationNodes(ep.act, last, 'Y', ep.alpha));
  const inputs: { name: string; rank: number }[] = [{ name: 'A', rank }, { name: 'B', rank }];
  if (ep.bias) inputs.push({ name: 'C', rank: 1 });
  return { nodes, inputs, output: { name: 'Y', rank } };
}

export const stats = { fast: 0, fallback: 0 };

export interface FastKernelOptions {
  /** products without transposes with fewer multiply-adds than this go to the original kernel */
  minWork: number;
  /** the same for products with a transposed operand (tfjs-wasm is much slower on those) */
  minWorkTransposed: number;
  /** products with fewer multiply-adds than this run on one thread (waking the pool costs more) */
  singleThreadBelow: number;
}

function wanted(plan: Plan | null, tA: boolean, tB: boolean, o: FastKernelOptions): plan is Plan {
  return plan !== null && plan.work >= (tA || tB ? o.minWorkTransposed : o.minWork);
}

/* eslint-disable @typescript-eslint/no-explicit-any */
type KernelArgs = { inputs: Record<string, TensorInfo | undefined>; backend: any; attrs?: Record<string, unknown> };

function run(io: BackendIO, plan: Plan, tA: boolean, tB: boolean, a: TensorInfo, b: TensorInfo, ep: Epilogue, o: FastKernelOptions, bias?: TensorInfo): TensorInfo {
  const key = `${plan.rank}|${+tA}${+tB}|${+ep.bias}|${ep.act}|${ep.act === 'leakyrelu' ? ep.alpha : ''}`;
  const s = session(key, () => graph(plan.rank, tA, tB, ep), plan.work < o.singleThreadBelow ? 1 : Infinity);
  const out = io.output(plan.outShape);
  try {
    const feeds: Record<string, OrtTensor> = {
      A: tensor(io.input(a), plan.aDims),
      B: tensor(io.input(b), plan.bDims),
    };
    if (bias) {
      const c = io.input(bias);
      feeds.C = tensor(c, [c.length]);
    }
    // onnxruntime writes straight into the output tensor's memory (pre-allocated fetch)
    s.run(feeds, { Y: tensor(out.view(), plan.yDims) }, {});
    return out.info;
  } catch (e) {
    out.discard();
    throw e;
  }
}

export function makeBatchMatMul(backendName: string, original: KernelFunc, opts: FastKernelOptions): KernelFunc {
  const ioOf = backendName === 'wasm' ? wasmIO : cpuIO;
  return ((args: KernelArgs) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const tA = !!args.attrs?.transposeA;
    const tB = !!args.attrs?.transposeB;
    const plan = a.dtype === 'float32' && b.dtype === 'float32' ? planMatMul(a.shape, b.shape, tA, tB) : null;
    if (wanted(plan, tA, tB, opts)) {
      try {
        const r = run(ioOf(args.backend), plan, tA, tB, a, b, { bias: false, act: 'linear', alpha: 0 }, opts);
        stats.fast++;
        return r;
      } catch {
        /* fall through to the original kernel */
      }
    }
    stats.fallback++;
    return original(args as any);
  }) as KernelFunc;
}

const GRAPH_ACTIVATIONS = new Set(['linear', 'relu', 'elu', 'relu6', 'leakyrelu', 'sigmoid']);

export function makeFusedMatMul(backendName: string, original: KernelFunc, opts: FastKernelOptions): KernelFunc {
  const ioOf = backendName === 'wasm' ? wasmIO : cpuIO;
  return ((args: KernelArgs) => {
    const { a, b, bias, preluActivationWeights } = args.inputs;
    const tA = !!args.attrs?.transposeA;
    const tB = !!args.attrs?.transposeB;
    const act = ((args.attrs?.activation as string | undefined) ?? 'linear') as Activation;
    const alpha = args.attrs?.leakyreluAlpha as number | undefined;
    let plan: Plan | null = null;
    if (a && b && a.dtype === 'float32' && b.dtype === 'float32' && !preluActivationWeights && GRAPH_ACTIVATIONS.has(act)) {
      plan = planMatMul(a.shape, b.shape, tA, tB);
    }
    // bias broadcasts along the last dim only ([n], [1, n], ..., or a scalar): other shapes go to tfjs
    const biasOk =
      !bias ||
      (plan !== null &&
        bias.dtype === 'float32' &&
        bias.shape.length <= plan.outShape.length &&
        (sizeOf(bias.shape) === 1 || (sizeOf(bias.shape) === plan.n && bias.shape[bias.shape.length - 1] === plan.n)));
    const alphaOk = act !== 'leakyrelu' || typeof alpha === 'number';
    if (wanted(plan, tA, tB, opts) && biasOk && alphaOk) {
      try {
        const r = run(ioOf(args.backend), plan, tA, tB, a!, b!, { bias: !!bias, act, alpha: alpha ?? 0 }, opts, bias);
        stats.fast++;
        return r;
      } catch {
        /* fall through to the original kernel */
      }
    }
    stats.fallback++;
    return original(args as any);
  }) as KernelFunc;
}
/* eslint-enable @typescript-eslint/no-explicit-any */
