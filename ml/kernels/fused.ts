/**
 * Fused ops of the encoder (issue 14): each is one tfjs kernel per direction, named `Ttc*`, with
 * implementations registered per backend by ml/kernels (WGSL programs on webgpu, typed-array or
 * SIMD loops on cpu/wasm). Where no implementation is active for the current backend, or the
 * implementation declines a call's shapes, the op runs as a composition of tfjs's own kernels
 * (the `composite*` functions below, which are also the reference the start-up self-test compares
 * against). See docs/kernels.md ("Fused ops").
 *
 * Kernel contract (all float32 unless said; N rows, D/F columns; shapes are what a kernel gets and
 * must return, in this order):
 *   TtcLayerNorm       {x [N,D], gamma [D], beta [D]}, {eps}          → [y [N,D], mean [N], rstd [N]]
 *   TtcLayerNormGrad   {dy [N,D], x, gamma, mean [N], rstd [N]}       → [dx [N,D], dgamma [D], dbeta [D]]
 *   TtcBiasGelu        {x [N,F], bias [F]}                            → [y = gelu(x + bias) [N,F]]   (exact erf GELU)
 *   TtcBiasGeluGrad    {dy [N,F], x [N,F], bias [F]}                  → [dx [N,F], dbias [F]]
 *   TtcAttention       {q, k, v [B·T, H·dh], keyMask? [B,T] (1 real, 0 padding)}, {batch, heads, scale}
 *                                                                     → [ctx [B·T, H·dh], lse [B·H·T]]
 *                      softmax over keys of scale·q·kᵀ + (1 − keyMask)·(−1e9); lse = that row's logsumexp
 *   TtcAttentionGrad   {dctx, q, k, v, ctx, lse, keyMask?}, {batch, heads, scale} → [dq, dk, dv]
 *   TtcSoftmaxXent     {logits [M,V], labels [M] int32}               → [loss [M] (= lse − logit[label]), lse [M]]
 *   TtcSoftmaxXentGrad {dloss [M], logits, labels, lse}               → [dlogits [M,V] = (softmax − onehot)·dloss]
 *   TtcEmbeddingGrad   {dy [N,D], ids [N] int32}, {rows}             → [dtable [rows,D]] (rows summed per id)
 */
import { tf, type Tensor } from '../tf.ts';

export const LAYER_NORM_EPS = 1e-12;

/** Masked-out attention keys get this added to their score (as the composite always did). */
export const MASKED_SCORE = -1e9;

export const FUSED_KERNELS = {
  layerNorm: ['TtcLayerNorm', 'TtcLayerNormGrad'],
  biasGelu: ['TtcBiasGelu', 'TtcBiasGeluGrad'],
  attention: ['TtcAttention', 'TtcAttentionGrad'],
  softmaxXent: ['TtcSoftmaxXent', 'TtcSoftmaxXentGrad'],
  embeddingGrad: ['TtcEmbeddingGrad'],
} as const;

export type FusedOp = keyof typeof FUSED_KERNELS;
export const FUSED_OPS = Object.keys(FUSED_KERNELS) as FusedOp[];

/** What a call hands an implementation's `supports` check (shapes and attrs of the forward call). */
export interface FusedCall {
  shapes: number[][];
  attrs?: Record<string, number | boolean>;
}

/** One backend's implementation of one fused op: its kernels (forward and grad) and the calls it takes. */
export interface FusedImpl {
  op: FusedOp;
  backend: string;
  /** e.g. 'wgsl: one workgroup per row' — logged when the self-test activates it */
  describe: string;
  kernels: tf.KernelConfig[];
  /** false → this call runs as the composite (per-call fallback); default: every call */
  supports?: (call: FusedCall) => boolean;
}

const registered = new Map<string, FusedImpl>(); // `${backend}/${op}` → impl
const active = new Map<string, FusedImpl>();
const counts = { fused: new Map<FusedOp, number>(), fallback: new Map<FusedOp, number>() };
let enabled = true;

const key = (backend: string, op: FusedOp) => `${backend}/${op}`;

/** Registers an implementation's kernels with tfjs; it runs only once activateFused has self-tested it. */
export function registerFused(impl: FusedImpl): void {
  const names = FUSED_KERNELS[impl.op] as readonly string[];
  const given = impl.kernels.map((k) => k.kernelName).sort();
  if (given.join() !== [...names].sort().join()) throw new Error(`fused ${impl.op}: kernels must be exactly ${names.join(', ')}, got ${given.join(', ')}`);
  for (const k of impl.kernels) {
    if (k.backendName !== impl.backend) throw new Error(`fused ${impl.op}: kernel ${k.kernelName} is for ${k.backendName}, not ${impl.backend}`);
    if (tf.getKernel(k.kernelName, k.backendName)) tf.unregisterKernel(k.kernelName, k.backendName);
    tf.registerKernel(k);
  }
  registered.set(key(impl.backend, impl.op), impl);
  active.delete(key(impl.backend, impl.op));
}

export function registeredFused(backend: string): FusedImpl[] {
  return FUSED_OPS.map((op) => registered.get(key(backend, op))).filter((i): i is FusedImpl => !!i);
}

/** Turns fused ops on or off for every backend (config `fusedKernels`, benchmarks' before/after). */
export function setFusedEnabled(on: boolean): void {
  enabled = on;
}

export function setFusedActive(impl: FusedImpl, on: boolean): void {
  if (on) active.set(key(impl.backend, impl.op), impl);
  else active.delete(key(impl.backend, impl.op));
}

export function activeFused(backend = tf.getBackend()): FusedOp[] {
  return FUSED_OPS.filter((op) => active.has(key(backend, op)));
}

/** Calls per op since the last reset: fused vs composite (an op whose kernel declined or is inactive). */
export function fusedCounts(): { fused: Record<string, number>; fallback: Record<string, number> } {
  return { fused: Object.fromEntries(counts.fused), fallback: Object.fromEntries(counts.fallback) };
}

export function resetFusedCounts(): void {
  counts.fused.clear();
  counts.fallback.clear();
}

function bump(m: Map<FusedOp, number>, op: FusedOp): void {
  m.set(op, (m.get(op) ?? 0) + 1);
}

/** Whether this call runs fused; counts the decision. */
function useFused(op: FusedOp, call: FusedCall): boolean {
  const impl = enabled ? active.get(key(tf.getBackend(), op)) : undefined;
  const yes = !!impl && (impl.supports?.(call) ?? true);
  bump(yes ? counts.fused : counts.fallback, op);
  return yes;
}

const run = (name: string, inputs: tf.NamedTensorMap, attrs: Record<string, number | boolean> = {}) =>
  tf.engine().runKernel(name, inputs, attrs as unknown as tf.NamedAttrMap) as Tensor[];

type CustomGradFn = Parameters<typeof tf.customGrad>[0];

// ---------------------------------------------------------------- LayerNorm

export function compositeLayerNorm(x: Tensor, gamma: Tensor, beta: Tensor): Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, LAYER_NORM_EPS)));
  return tf.add(tf.mul(normed, gamma), beta);
}

const fusedLayerNorm = tf.customGrad(((x: Tensor, gamma: Tensor, beta: Tensor, save: tf.GradSaveFunc) => {
  const [y, mean, rstd] = run('TtcLayerNorm', { x, gamma, beta }, { eps: LAYER_NORM_EPS });
  save([x, gamma, mean, rstd]);
  return {
    value: y,
    gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => {
      const [sx, sg, sm, sr] = saved;
      return run('TtcLayerNormGrad', { dy: dy as Tensor, x: sx, gamma: sg, mean: sm, rstd: sr });
    },
  };
}) as unknown as CustomGradFn) as (x: Tensor, gamma: Tensor, beta: Tensor) => Tensor;

/** LayerNorm over the last axis of x [N, D]. */
export function layerNorm(x: Tensor, gamma: Tensor, beta: Tensor): Tensor {
  return x.rank === 2 && useFused('layerNorm', { shapes: [x.shape] }) ? fusedLayerNorm(x, gamma, beta) : compositeLayerNorm(x, gamma, beta);
}

// ---------------------------------------------------------------- bias + GELU

/** Exact (erf) GELU, as in BERT/RoBERTa (`hidden_act: "gelu"`). */
export function gelu(x: Tensor): Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
}

export function compositeBiasGelu(x: Tensor, bias: Tensor): Tensor {
  return gelu(tf.add(x, bias));
}

const fusedBiasGelu = tf.customGrad(((x: Tensor, bias: Tensor, save: tf.GradSaveFunc) => {
  const [y] = run('TtcBiasGelu', { x, bias });
  save([x, bias]);
  return {
    value: y,
    gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => run('TtcBiasGeluGrad', { dy: dy as Tensor, x: saved[0], bias: saved[1] }),
  };
}) as unknown as CustomGradFn) as (x: Tensor, bias: Tensor) => Tensor;

/** gelu(x + bias) for x [N, F]. */
export function biasGelu(x: Tensor, bias: Tensor): Tensor {
  return x.rank === 2 && useFused('biasGelu', { shapes: [x.shape] }) ? fusedBiasGelu(x, bias) : compositeBiasGelu(x, bias);
}

// ---------------------------------------------------------------- attention

/**
 * Scaled dot-product attention of q, k, v [B·T, H·dh] (the dense projections' layout, heads side
 * by side), with an optional key padding mask [B, T]; returns the context [B·T, H·dh].
 */
export function compositeAttention(q: Tensor, k: Tensor, v: Tensor, batch: number, heads: number, keyMask?: Tensor): Tensor {
  const [rows, d] = q.shape as [number, number];
  const T = rows / batch;
  const dh = d / heads;
  // [B*T, d] → [B*h, T, dh]
  const split = (t: Tensor) => tf.reshape(tf.transpose(tf.reshape(t, [batch, T, heads, dh]), [0, 2, 1, 3]), [batch * heads, T, dh]);
  let scores = tf.mul(tf.matMul(split(q), split(k), false, true), 1 / Math.sqrt(dh)); // [B*h, T, T]
  if (keyMask) {
    // large negative additive bias on padded keys, broadcast over heads and queries: [B*h, 1, T]
    const perSeq = tf.reshape(tf.mul(tf.sub(1, keyMask), MASKED_SCORE), [batch, 1, 1, T]);
    scores = tf.add(scores, tf.reshape(tf.tile(perSeq, [1, heads, 1, 1]), [batch * heads, 1, T]));
  }
  const ctx = tf.matMul(tf.softmax(scores), split(v)); // [B*h, T, dh]
  return tf.reshape(tf.transpose(tf.reshape(ctx, [batch, heads, T, dh]), [0, 2, 1, 3]), [batch * T, d]);
}

type AttentionAttrs = { batch: number; heads: number; scale: number };

function fusedAttentionFn(attrs: AttentionAttrs, masked: boolean) {
  return tf.customGrad(((...args: unknown[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const [q, k, v, keyMask] = args.slice(0, masked ? 4 : 3) as Tensor[];
    const inputs: tf.NamedTensorMap = masked ? { q, k, v, keyMask } : { q, k, v };
    const [ctx, lse] = run('TtcAttention', inputs, attrs);
    save(masked ? [q, k, v, ctx, lse, keyMask] : [q, k, v, ctx, lse]);
    return {
      value: ctx,
      gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => {
        const [sq, sk, sv, sctx, slse, smask] = saved;
        const g = run('TtcAttentionGrad', { dctx: dy as Tensor, q: sq, k: sk, v: sv, ctx: sctx, lse: slse, ...(masked ? { keyMask: smask } : {}) }, attrs);
        return masked ? [...g, tf.zerosLike(smask)] : g;
      },
    };
  }) as unknown as CustomGradFn) as (...t: Tensor[]) => Tensor;
}

export function attention(q: Tensor, k: Tensor, v: Tensor, batch: number, heads: number, keyMask?: Tensor): Tensor {
  const scale = 1 / Math.sqrt(q.shape[1]! / heads);
  const call: FusedCall = { shapes: [q.shape, ...(keyMask ? [keyMask.shape] : [])], attrs: { batch, heads, scale, masked: !!keyMask } };
  if (!useFused('attention', call)) return compositeAttention(q, k, v, batch, heads, keyMask);
  const fn = fusedAttentionFn({ batch, heads, scale }, !!keyMask);
  return keyMask ? fn(q, k, v, keyMask) : fn(q, k, v);
}

// ---------------------------------------------------------------- softmax cross-entropy

/**
 * Per-row softmax cross-entropy of logits [M, V] against integer labels [M], with the closed-form
 * gradient (softmax − onehot)·dy: autodiff through logSumExp adds a max/equal pass over the whole
 * [M, V] matrix that costs more than the rest of the head on CPU backends.
 */
function compositeXentRows(numClasses: number) {
  return tf.customGrad(((x: Tensor, y: Tensor, save: tf.GradSaveFunc) => {
    const onehot = tf.oneHot(y, numClasses);
    const logProbs = tf.sub(x, tf.logSumExp(x, 1, true));
    save([logProbs, onehot]);
    return {
      value: tf.neg(tf.sum(tf.mul(onehot, logProbs), 1)),
      gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => {
        const [lp, oh] = saved;
        return [tf.mul(tf.sub(tf.exp(lp), oh), tf.expandDims(dy as Tensor, 1)), tf.zerosLike(y)];
      },
    };
  }) as unknown as CustomGradFn) as (x: Tensor, y: Tensor) => Tensor;
}

const fusedXentRows = tf.customGrad(((x: Tensor, y: Tensor, save: tf.GradSaveFunc) => {
  const [loss, lse] = run('TtcSoftmaxXent', { logits: x, labels: y });
  save([x, y, lse]);
  return {
    value: loss,
    gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => {
      const [sx, sy, slse] = saved;
      const [dlogits] = run('TtcSoftmaxXentGrad', { dloss: dy as Tensor, logits: sx, labels: sy, lse: slse });
      return [dlogits, tf.zerosLike(sy)];
    },
  };
}) as unknown as CustomGradFn) as (x: Tensor, y: Tensor) => Tensor;

/** Per-row losses [M]. */
export function softmaxCrossEntropyRows(logits: Tensor, labels: Tensor, numClasses: number, fused = true): Tensor {
  return fused && useFused('softmaxXent', { shapes: [logits.shape] }) ? fusedXentRows(logits, labels) : compositeXentRows(numClasses)(logits, labels);
}

/** Mean softmax cross-entropy of logits [M, V] against integer labels [M]. */
export function crossEntropy(logits: Tensor, labels: Tensor, numClasses: number): Tensor {
  return tf.mean(softmaxCrossEntropyRows(logits, labels, numClasses));
}

// ---------------------------------------------------------------- row lookup (embedding)

/** The gradient of a row lookup: dy's rows summed into a [rows, D] table by id. */
export function embeddingGrad(dy: Tensor, ids: Tensor, rows: number, fused = true): Tensor {
  if (fused && useFused('embeddingGrad', { shapes: [dy.shape], attrs: { rows } })) return run('TtcEmbeddingGrad', { dy, ids }, { rows })[0];
  // scatterND sums duplicate indices, which is exactly the embedding gradient
  return tf.scatterND(tf.expandDims(ids, 1), dy, [rows, dy.shape[1]!]);
}

/**
 * Row lookup `table[ids]` with a gradient built on embeddingGrad. tfjs's own gather gradient
 * (UnsortedSegmentSum) is missing on wasm and takes minutes on cpu (STACK-NOTES.md).
 */
export const rowLookup = tf.customGrad(((table: Tensor, ids: Tensor, save: tf.GradSaveFunc) => {
  save([ids]);
  const rows = table.shape[0];
  return {
    value: tf.gather(table, ids),
    gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => [embeddingGrad(dy as Tensor, saved[0], rows), tf.zerosLike(saved[0])],
  };
}) as unknown as CustomGradFn) as (table: Tensor, ids: Tensor) => Tensor;
