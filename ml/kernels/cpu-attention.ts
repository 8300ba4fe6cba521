/**
 * The fused attention op (TtcAttention / TtcAttentionGrad, contract in ./fused.ts) on the `cpu`
 * backend, each direction one onnxruntime graph: the heads are split by Reshape/Transpose inside
 * the graph, the batched products run in MLAS, softmax and the row reductions vectorised, all on
 * onnxruntime's threads. The composite it replaces ran ~12 tfjs kernels forward and ~25 backward
 * per layer (transposes in and out, the [B·H, T, T] score chain) and kept every intermediate until
 * the step ended.
 *
 * Backward recomputes the probabilities from q, k and the saved row logsumexp (as flash attention
 * does) instead of saving [B·H, T, T]:
 *   P = exp(scale·q·kᵀ + bias − lse), dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ∘ (dP − rowsum(dO ∘ O)),
 *   dQ = scale·dS·K, dK = scale·dSᵀ·Q.
 */
import type { tf as TF } from '../tf.ts';
import { MASKED_SCORE, type FusedCall, type FusedImpl } from './fused.ts';
import type { NodeSpec } from './onnx-graph.ts';
import { session, tensor, type GraphSpec } from './ort.ts';
import { unshared } from './matmul.ts';

type TensorInfo = TF.TensorInfo;
/* eslint-disable @typescript-eslint/no-explicit-any */
type KernelArgs = { inputs: Record<string, TensorInfo | undefined>; backend: any; attrs?: Record<string, unknown> };

interface Dims {
  B: number;
  H: number;
  dh: number;
  scale: number;
  masked: boolean;
}

/** Nodes that turn input `x` [B·T, H·dh] into `out` [B, H, T, dh] (perm [0,2,1,3]) or [B, H, dh, T] ([0,2,3,1]). */
function heads(x: string, out: string, perm: number[]): NodeSpec[] {
  return [
    { op: 'Reshape', inputs: [x, 'shape4'], outputs: [`${out}_4`] },
    { op: 'Transpose', inputs: [`${out}_4`], outputs: [out], attrs: { perm } },
  ];
}

/** [B, H, T, dh] → [B·T, H·dh] as output `y` */
function merge(x: string, y: string): NodeSpec[] {
  return [
    { op: 'Transpose', inputs: [x], outputs: [`${y}_t`], attrs: { perm: [0, 2, 1, 3] } },
    { op: 'Reshape', inputs: [`${y}_t`, 'shape2'], outputs: [y] },
  ];
}

/** scores S = scale·q·kᵀ (+ key-padding bias) as `S`, from Qh [B,H,T,dh] and KhT [B,H,dh,T] */
function scores(d: Dims): NodeSpec[] {
  const n: NodeSpec[] = [
    { op: 'Constant', inputs: [], outputs: ['shape4'], attrs: { value_ints: [d.B, -1, d.H, d.dh] } },
    { op: 'Constant', inputs: [], outputs: ['shape2'], attrs: { value_ints: [-1, d.H * d.dh] } },
    { op: 'Constant', inputs: [], outputs: ['scale'], attrs: { value_float: { float: d.scale } } },
    { op: 'MatMul', inputs: ['Qh', 'KhT'], outputs: ['S0'] },
    { op: 'Mul', inputs: ['S0', 'scale'], outputs: [d.masked ? 'S1' : 'S'] },
  ];
  if (d.masked) {
    n.push(
      { op: 'Constant', inputs: [], outputs: ['one'], attrs: { value_float: { float: 1 } } },
      { op: 'Constant', inputs: [], outputs: ['big'], attrs: { value_float: { float: MASKED_SCORE } } },
      { op: 'Constant', inputs: [], outputs: ['maskShape'], attrs: { value_ints: [d.B, 1, 1, -1] } },
      { op: 'Sub', inputs: ['one', 'M'], outputs: ['M1'] },
      { op: 'Mul', inputs: ['M1', 'big'], outputs: ['M2'] },
      { op: 'Reshape', inputs: ['M2', 'maskShape'], outputs: ['bias'] },
      { op: 'Add', inputs: ['S1', 'bias'], outputs: ['S'] },
    );
  }
  return n;
}

function forwardGraph(d: Dims): GraphSpec {
  const nodes: NodeSpec[] = [
    ...scores(d),
    ...heads('Q', 'Qh', [0, 2, 1, 3]),
    ...heads('K', 'KhT', [0, 2, 3, 1]),
    ...heads('V', 'Vh', [0, 2, 1, 3]),
    { op: 'Softmax', inputs: ['S'], outputs: ['P'], attrs: { axis: 3 } },
    { op: 'ReduceLogSumExp', inputs: ['S'], outputs: ['L4'], attrs: { axes: [3], keepdims: 0 } },
    { op: 'Constant', inputs: [], outputs: ['flat'], attrs: { value_ints: [-1] } },
    { op: 'Reshape', inputs: ['L4', 'flat'], outputs: ['LSE'] },
    { op: 'MatMul', inputs: ['P', 'Vh'], outputs: ['Oh'] },
    ...merge('Oh', 'Y'),
  ];
  const inputs = ['Q', 'K', 'V'].map((name) => ({ name, rank: 2 }));
  if (d.masked) inputs.push({ name: 'M', rank: 2 });
  return { nodes, inputs, output: { name: 'Y', rank: 2 }, more: [{ name: 'LSE', rank: 1 }] };
}

function backwardGraph(d: Dims): GraphSpec {
  const nodes: NodeSpec[] = [
    ...scores(d),
    ...heads('Q', 'Qh', [0, 2, 1, 3]),
    ...heads('K', 'KhT', [0, 2, 3, 1]),
    { op: 'Transpose', inputs: ['KhT'], outputs: ['Kh'], attrs: { perm: [0, 1, 3, 2] } },
    ...heads('V', 'VhT', [0, 2, 3, 1]),
    ...heads('DO', 'DOh', [0, 2, 1, 3]),
    ...heads('O', 'Oh', [0, 2, 1, 3]),
    { op: 'Constant', inputs: [], outputs: ['lseShape'], attrs: { value_ints: [d.B, d.H, -1, 1] } },
    { op: 'Reshape', inputs: ['LSE', 'lseShape'], outputs: ['L4'] },
    { op: 'Sub', inputs: ['S', 'L4'], outputs: ['SL'] },
    { op: 'Exp', inputs: ['SL'], outputs: ['P'] },
    { op: 'Transpose', inputs: ['P'], outputs: ['PT'], attrs: { perm: [0, 1, 3, 2] } },
    { op: 'MatMul', inputs: ['PT', 'DOh'], outputs: ['dVh'] },
    { op: 'MatMul', inputs: ['DOh', 'VhT'], outputs: ['dP'] },
    { op: 'Mul', inputs: ['DOh', 'Oh'], outputs: ['DOO'] },
    { op: 'Constant', inputs: [], outputs: ['last'], attrs: { value_ints: [3] } },
    { op: 'ReduceSum', inputs: ['DOO', 'last'], outputs: ['Dr'], attrs: { keepdims: 1 } },
    { op: 'Sub', inputs: ['dP', 'Dr'], outputs: ['dPD'] },
    { op: 'Mul', inputs: ['P', 'dPD'], outputs: ['dS0'] },
    { op: 'Mul', inputs: ['dS0', 'scale'], outputs: ['dS'] },
    { op: 'MatMul', inputs: ['dS', 'Kh'], outputs: ['dQh'] },
    { op: 'Transpose', inputs: ['dS'], outputs: ['dST'], attrs: { perm: [0, 1, 3, 2] } },
    { op: 'MatMul', inputs: ['dST', 'Qh'], outputs: ['dKh'] },
    ...merge('dQh', 'Y'),
    ...merge('dKh', 'dK'),
    ...merge('dVh', 'dV'),
  ];
  const inputs = ['DO', 'Q', 'K', 'V', 'O'].map((name) => ({ name, rank: 2 }));
  inputs.push({ name: 'LSE', rank: 1 });
  if (d.masked) inputs.push({ name: 'M', rank: 2 });
  return { nodes, inputs, output: { name: 'Y', rank: 2 }, more: [{ name: 'dK', rank: 2 }, { name: 'dV', rank: 2 }] };
}

function dimsOf(args: KernelArgs, q: TensorInfo): Dims {
  const B = args.attrs!.batch as number;
  const H = args.attrs!.heads as number;
  return { B, H, dh: q.shape[1]! / H, scale: args.attrs!.scale as number, masked: !!args.inputs.keyMask };
}

const keyOf = (dir: string, d: Dims) => `attn-${dir}|${d.B}|${d.H}|${d.dh}|${d.scale}|${+d.masked}`;

function run(args: KernelArgs, key: string, build: () => GraphSpec, feeds: Record<string, TensorInfo>, outs: Record<string, number[]>): TensorInfo[] {
  const b = args.backend;
  const s = session(key, build);
  const ortFeeds: Record<string, ReturnType<typeof tensor>> = {};
  for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = tensor(unshared(b.data.get(t.dataId).values as Float32Array), t.shape);
  const values: Record<string, Float32Array> = {};
  const fetches: Record<string, ReturnType<typeof tensor>> = {};
  for (const [name, shape] of Object.entries(outs)) fetches[name] = tensor((values[name] = new Float32Array(shape.reduce((x, y) => x * y, 1))), shape);
  s.run(ortFeeds, fetches, {});
  return Object.entries(outs).map(([name, shape]) => b.makeTensorInfo(shape, 'float32', values[name]) as TensorInfo);
}

function attentionKernel(args: KernelArgs): TensorInfo[] {
  const { q, k, v, keyMask } = args.inputs as Record<string, TensorInfo>;
  const d = dimsOf(args, q);
  const [N, D] = q.shape as [number, number];
  const feeds: Record<string, TensorInfo> = { Q: q, K: k, V: v, ...(d.masked ? { M: keyMask } : {}) };
  return run(args, keyOf('fwd', d), () => forwardGraph(d), feeds, { Y: [N, D], LSE: [d.H * N] });
}

function attentionGradKernel(args: KernelArgs): TensorInfo[] {
  const { dctx, q, k, v, ctx, lse, keyMask } = args.inputs as Record<string, TensorInfo>;
  const d = dimsOf(args, q);
  const shape = [...q.shape];
  const feeds: Record<string, TensorInfo> = { DO: dctx, Q: q, K: k, V: v, O: ctx, LSE: lse, ...(d.masked ? { M: keyMask } : {}) };
  return run(args, keyOf('bwd', d), () => backwardGraph(d), feeds, { Y: shape, dK: shape, dV: shape });
}

/** Calls this implementation takes: float inputs whose width splits evenly into the heads. */
function supports(call: FusedCall): boolean {
  const [q] = call.shapes;
  const batch = Number(call.attrs?.batch);
  const heads = Number(call.attrs?.heads);
  return !!q && q.length === 2 && batch > 0 && heads > 0 && q[0]! % batch === 0 && q[1]! % heads === 0;
}

/** TtcAttention/TtcAttentionGrad for the cpu backend (register with registerFused; the start-up self-test activates it). */
export function cpuAttentionImpl(): FusedImpl {
  return {
    op: 'attention',
    backend: 'cpu',
    describe: 'onnxruntime graph per direction (MLAS batched products, softmax, probabilities recomputed from the row logsumexp)',
    kernels: [
      { kernelName: 'TtcAttention', backendName: 'cpu', kernelFunc: attentionKernel as unknown as TF.KernelFunc },
      { kernelName: 'TtcAttentionGrad', backendName: 'cpu', kernelFunc: attentionGradKernel as unknown as TF.KernelFunc },
    ],
    supports,
  };
}
/* eslint-enable @typescript-eslint/no-explicit-any */
