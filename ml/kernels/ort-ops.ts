/**
 * tfjs `cpu` kernels for the element-wise, reduction, transpose and softmax ops of a training step,
 * run in onnxruntime (vectorised, multi-threaded C++) like the fast matmul. tfjs-cpu runs them as
 * generic JavaScript: 25–80 ns per element with broadcasting (index arithmetic per element), a
 * transpose before every reduction over a non-last axis; on a BERT-base-shaped layer (B16×T64,
 * d768) these ops took 6.8 s of a 8 s one-layer step once the matmuls were fast (docs/cpu-large.md).
 *
 * Only float32 ops touching at least `minElements` elements take this path; everything else (int32,
 * tiny tensors, unusual attributes, any onnxruntime error) goes to the original kernel, so results
 * and error messages stay tfjs's own there.
 */
import type { tf as TF } from '../tf.ts';
import type { NodeSpec } from './onnx-graph.ts';
import { session, tensor, type GraphSpec } from './ort.ts';
import { broadcastShape, sizeOf, unshared } from './matmul.ts';

type TensorInfo = TF.TensorInfo;
type KernelFunc = TF.KernelFunc;
/* eslint-disable @typescript-eslint/no-explicit-any */
type KernelArgs = { inputs: Record<string, TensorInfo | undefined>; backend: any; attrs?: Record<string, unknown> };

/** What one call runs: the graph's cache key and builder, the inputs in graph order, the output shape. */
interface OpPlan {
  key: string;
  build: () => GraphSpec;
  inputs: TensorInfo[];
  outShape: number[];
}

type Planner = (inputs: Record<string, TensorInfo | undefined>, attrs: Record<string, unknown>) => OpPlan | null;

function graphOf(nodes: NodeSpec[], ranks: number[], outRank: number): GraphSpec {
  return { nodes, inputs: ranks.map((rank, i) => ({ name: `X${i}`, rank })), output: { name: 'Y', rank: outRank } };
}

function binary(kernel: string, nodes: (a: string, b: string) => NodeSpec[]): [string, Planner] {
  return [
    kernel,
    (inputs) => {
      const { a, b } = inputs;
      if (!a || !b) return null;
      const outShape = broadcastShape(a.shape, b.shape);
      if (!outShape) return null;
      return { key: `${kernel}|${a.shape.length}|${b.shape.length}`, build: () => graphOf(nodes('X0', 'X1'), [a.shape.length, b.shape.length], outShape.length), inputs: [a, b], outShape };
    },
  ];
}

function unary(kernel: string, nodes: (x: string) => NodeSpec[]): [string, Planner] {
  return [
    kernel,
    (inputs) => {
      const { x } = inputs;
      if (!x) return null;
      const r = x.shape.length;
      return { key: `${kernel}|${r}`, build: () => graphOf(nodes('X0'), [r], r), inputs: [x], outShape: [...x.shape] };
    },
  ];
}

const one = (op: string) => (a: string, b?: string): NodeSpec[] => [{ op, inputs: b === undefined ? [a] : [a, b], outputs: ['Y'] }];

/** Sorted, non-negative axes of a tfjs reduction's `axis` attribute (undefined/[] = every axis, as tfjs does). */
function axesOf(attr: unknown, rank: number): number[] | null {
  const raw = attr === undefined || attr === null ? [] : Array.isArray(attr) ? (attr as number[]) : [attr as number];
  const axes = (raw.length === 0 ? [...Array(rank).keys()] : raw.map((a) => (a < 0 ? a + rank : a))).sort((x, y) => x - y);
  if (axes.some((a, i) => !Number.isInteger(a) || a < 0 || a >= rank || (i > 0 && a === axes[i - 1]))) return null;
  return axes;
}

function reduction(kernel: string, op: 'ReduceSum' | 'ReduceMean' | 'ReduceMax'): [string, Planner] {
  return [
    kernel,
    (inputs, attrs) => {
      const { x } = inputs;
      if (!x || x.shape.length === 0) return null;
      const r = x.shape.length;
      // (tfjs names the attribute `axis` on Sum and Mean, `reductionIndices` on Max)
      const axes = axesOf(kernel === 'Max' ? attrs.reductionIndices : attrs.axis, r);
      if (!axes) return null;
      const keep = attrs.keepDims === true;
      const outShape = keep ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
      // opset 17: ReduceSum takes its axes as an int64 input, ReduceMean/ReduceMax as an attribute
      const nodes: NodeSpec[] =
        op === 'ReduceSum'
          ? [
              { op: 'Constant', inputs: [], outputs: ['axes'], attrs: { value_ints: axes } },
              { op, inputs: ['X0', 'axes'], outputs: ['Y'], attrs: { keepdims: keep ? 1 : 0 } },
            ]
          : [{ op, inputs: ['X0'], outputs: ['Y'], attrs: { axes, keepdims: keep ? 1 : 0 } }];
      return { key: `${kernel}|${r}|${axes}|${+keep}`, build: () => graphOf(nodes, [r], outShape.length), inputs: [x], outShape };
    },
  ];
}

const PLANNERS = new Map<string, Planner>([
  binary('Add', one('Add')),
  binary('Sub', one('Sub')),
  binary('Multiply', one('Mul')),
  binary('RealDiv', one('Div')),
  binary('Maximum', one('Max')),
  binary('Minimum', one('Min')),
  binary('SquaredDifference', (a, b) => [
    { op: 'Sub', inputs: [a, b], outputs: ['D'] },
    { op: 'Mul', inputs: ['D', 'D'], outputs: ['Y'] },
  ]),
  unary('Exp', one('Exp')),
  unary('Erf', one('Erf')),
  unary('Neg', one('Neg')),
  unary('Sqrt', one('Sqrt')),
  unary('Tanh', one('Tanh')),
  unary('Log', one('Log')),
  unary('Abs', one('Abs')),
  unary('Reciprocal', one('Reciprocal')),
  unary('Sigmoid', one('Sigmoid')),
  unary('Relu', one('Relu')),
  unary('Square', (x) => [{ op: 'Mul', inputs: [x, x], outputs: ['Y'] }]),
  unary('Rsqrt', (x) => [
    { op: 'Sqrt', inputs: [x], outputs: ['S'] },
    { op: 'Reciprocal', inputs: ['S'], outputs: ['Y'] },
  ]),
  reduction('Sum', 'ReduceSum'),
  reduction('Mean', 'ReduceMean'),
  reduction('Max', 'ReduceMax'),
  [
    'Transpose',
    (inputs, attrs) => {
      const { x } = inputs;
      const perm = attrs.perm as number[] | undefined;
      if (!x || !perm || perm.length !== x.shape.length) return null;
      const r = perm.length;
      return { key: `Transpose|${perm}`, build: () => graphOf([{ op: 'Transpose', inputs: ['X0'], outputs: ['Y'], attrs: { perm } }], [r], r), inputs: [x], outShape: perm.map((p) => x.shape[p]) };
    },
  ],
  [
    'Softmax',
    (inputs, attrs) => {
      const { logits } = inputs;
      if (!logits || logits.shape.length === 0) return null;
      const r = logits.shape.length;
      // tfjs's cpu Softmax only supports the last dimension (dim -1)
      if (attrs.dim !== undefined && attrs.dim !== -1 && attrs.dim !== r - 1) return null;
      return { key: `Softmax|${r}`, build: () => graphOf([{ op: 'Softmax', inputs: ['X0'], outputs: ['Y'], attrs: { axis: r - 1 } }], [r], r), inputs: [logits], outShape: [...logits.shape] };
    },
  ],
]);

/** The tfjs kernels this module replaces on the cpu backend. */
export const ORT_OP_KERNELS: readonly string[] = [...PLANNERS.keys()];

export const opStats = { fast: 0, fallback: 0 };

export interface OrtOpOptions {
  /** ops touching fewer elements than this go to the original kernel (an onnxruntime call costs ~20–40 µs) */
  minElements: number;
  /** ops touching fewer elements than this run on one onnxruntime thread */
  singleThreadBelow: number;
}

export function makeOrtOp(kernelName: string, original: KernelFunc, opts: OrtOpOptions): KernelFunc {
  const planner = PLANNERS.get(kernelName);
  if (!planner) throw new Error(`no onnxruntime plan for ${kernelName}`);
  return ((args: KernelArgs) => {
    const plan = planner(args.inputs, args.attrs ?? {});
    const size = plan ? sizeOf(plan.outShape) : 0;
    // the work is the larger of what is read and what is written (a reduction writes little)
    const work = plan ? Math.max(size, ...plan.inputs.map((t) => sizeOf(t.shape))) : 0;
    if (plan && size > 0 && work >= opts.minElements && plan.inputs.every((t) => t.dtype === 'float32' && sizeOf(t.shape) > 0)) {
      try {
        const s = session(plan.key, plan.build, work < opts.singleThreadBelow ? 1 : Infinity);
        const values = new Float32Array(size);
        const feeds: Record<string, ReturnType<typeof tensor>> = {};
        plan.inputs.forEach((t, i) => (feeds[`X${i}`] = tensor(unshared(args.backend.data.get(t.dataId).values as Float32Array), t.shape)));
        s.run(feeds, { Y: tensor(values, plan.outShape) }, {});
        opStats.fast++;
        return args.backend.makeTensorInfo(plan.outShape, 'float32', values) as TensorInfo;
      } catch {
        /* fall through to the original kernel */
      }
    }
    opStats.fallback++;
    return original(args as any);
  }) as KernelFunc;
}
/* eslint-enable @typescript-eslint/no-explicit-any */
