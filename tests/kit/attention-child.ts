/**
 * The attention op (ml/kernels/fused.ts `attention`) on one backend, in its own process, for
 * tests/webgpu-attention.test.ts:
 *
 *   node --import tsx tests/kit/attention-child.ts <webgpu|cpu> <result.json>
 *
 * For each case of ATTENTION_CASES: the value and d/dq, d/dk, d/dv of sum(attention(q, k, v) ∘ dy)
 * from inputs that depend only on the case (so both processes see the same numbers). On webgpu the
 * fused kernel must have passed the start-up self-test; the child also counts GPU dispatches of one
 * TtcAttention / TtcAttentionGrad call and records tf.memory().numTensors over repeated steps. On
 * cpu the fused kernels are off: the composite of tfjs's cpu kernels is the reference.
 * TTC_ATTN_TRACE=1 prints the time after each case to stderr (shader compiles dominate on lavapipe).
 */
import fs from 'node:fs';

import { initBackend } from '../../ml/backend.ts';
import { attention, fusedCounts, resetFusedCounts } from '../../ml/kernels/fused.ts';
import { Rng } from '../../core/rng.ts';
import { tf, type Tensor } from '../../ml/tf.ts';
import { countingDispatches } from '../../bench/lib/dispatch-count.ts';

export interface AttentionCase {
  B: number;
  T: number;
  H: number;
  dh: number;
  /** none; pad: trailing padding of a different length per sequence; allpad: also one sequence wholly padding */
  mask: 'none' | 'pad' | 'allpad';
}

/** Odd T (not a tile multiple), one head, dh 4 to 64 (128 on request), padding, a wholly padded sequence. */
export const ATTENTION_CASES: AttentionCase[] = [
  { B: 2, T: 13, H: 3, dh: 8, mask: 'pad' },
  { B: 3, T: 5, H: 1, dh: 16, mask: 'none' },
  { B: 1, T: 70, H: 2, dh: 32, mask: 'none' },
  { B: 2, T: 70, H: 1, dh: 64, mask: 'pad' },
  { B: 2, T: 9, H: 2, dh: 4, mask: 'allpad' },
  // dh 128 only on request (TTC_ATTENTION_WIDE=1): lavapipe's LLVM takes ~25 s of CPU to compile
  // each of its shaders from a cold Mesa shader cache (96 vec4 per thread in registers)
  ...(process.env.TTC_ATTENTION_WIDE === '1' ? [{ B: 1, T: 37, H: 1, dh: 128, mask: 'pad' as const }] : []),
];

export interface CaseResult {
  name: string;
  /** value, dq, dk, dv */
  outputs: number[][];
  fused: boolean;
}

export interface AttentionChildResult {
  backend: string;
  log: string[];
  fusedOps: string[];
  cases: CaseResult[];
  /** GPU dispatches of one TtcAttention call and of one TtcAttentionGrad call (webgpu) */
  dispatches?: { forward: number; backward: number };
  /** tf.memory().numTensors after each of several forward+backward steps */
  numTensors: number[];
}

export const caseName = (c: AttentionCase) => `B${c.B} T${c.T} H${c.H} dh${c.dh}${c.mask === 'none' ? '' : ` ${c.mask}`}`;

function normal(rng: Rng, shape: number[], scale = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = rng.normal() * scale;
  return tf.tensor(v, shape, 'float32');
}

function inputsOf(c: AttentionCase, seed: number) {
  const rng = new Rng(seed);
  const d = c.H * c.dh;
  // scale 2: scores of a few units, so the softmax is far from uniform
  const [q, k, v] = [0, 1, 2].map(() => normal(rng, [c.B * c.T, d], 2));
  const dy = normal(rng, [c.B * c.T, d]);
  let mask: Tensor | undefined;
  if (c.mask !== 'none') {
    const m = new Float32Array(c.B * c.T);
    for (let b = 0; b < c.B; b++) {
      const real = c.mask === 'allpad' && b === c.B - 1 ? 0 : c.T - ((b * 3 + 1) % c.T);
      for (let t = 0; t < real; t++) m[b * c.T + t] = 1;
    }
    mask = tf.tensor2d(m, [c.B, c.T]);
  }
  return { q, k, v, dy, mask };
}

function step(c: AttentionCase, x: ReturnType<typeof inputsOf>): Tensor[] {
  return tf.tidy(() => {
    const f = (q: Tensor, k: Tensor, v: Tensor) => attention(q, k, v, c.B, c.H, x.mask);
    const value = f(x.q, x.k, x.v);
    const grads = tf.grads((q: Tensor, k: Tensor, v: Tensor) => tf.sum(tf.mul(f(q, k, v), x.dy)))([x.q, x.k, x.v]);
    return [value, ...grads];
  });
}

/** Counts GPUComputePassEncoder dispatches (Dawn's globals) while fn runs and the queue flushes. */
async function countDispatches(fn: () => Tensor[]): Promise<number> {
  const counter = countingDispatches();
  try {
    const out = fn();
    await Promise.all(out.map((t) => t.data()));
    tf.dispose(out);
  } finally {
    counter.restore();
  }
  return counter.get();
}

async function main(backend: 'webgpu' | 'cpu', file: string): Promise<void> {
  const t0 = performance.now();
  const info = await initBackend(backend, { threads: 1, allowSoftwareGpu: true, fastKernels: false, fusedKernels: backend === 'webgpu' });
  const result: AttentionChildResult = { backend: info.detail, log: info.log, fusedOps: info.fused, cases: [], numTensors: [] };
  if (process.env.TTC_ATTN_TRACE) console.error(`init ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  for (const [i, c] of ATTENTION_CASES.entries()) {
    const x = inputsOf(c, 1000 + i);
    resetFusedCounts();
    const outs = step(c, x);
    const data = (await Promise.all(outs.map((t) => t.data()))) as Float32Array[];
    result.cases.push({ name: caseName(c), outputs: data.map((d) => Array.from(d)), fused: (fusedCounts().fused.attention ?? 0) > 0 && !fusedCounts().fallback.attention });
    tf.dispose([...outs, x.q, x.k, x.v, x.dy, ...(x.mask ? [x.mask] : [])]);
    if (process.env.TTC_ATTN_TRACE) console.error(`${caseName(c)} ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  // one padded case again: tensor count over repeated forward+backward steps
  const c = ATTENTION_CASES[0];
  const x = inputsOf(c, 7);
  for (let s = 0; s < 4; s++) {
    const outs = step(c, x);
    await Promise.all(outs.map((t) => t.data()));
    tf.dispose(outs);
    result.numTensors.push(tf.memory().numTensors);
  }
  if (backend === 'webgpu' && info.fused.includes('attention')) {
    const attrs = { batch: c.B, heads: c.H, scale: 1 / Math.sqrt(c.dh) };
    const run = (name: string, inputs: tf.NamedTensorMap) => tf.engine().runKernel(name, inputs, attrs as unknown as tf.NamedAttrMap) as Tensor[];
    const [ctx, lse] = run('TtcAttention', { q: x.q, k: x.k, v: x.v, keyMask: x.mask! });
    await Promise.all([ctx.data(), lse.data()]);
    result.dispatches = {
      forward: await countDispatches(() => run('TtcAttention', { q: x.q, k: x.k, v: x.v, keyMask: x.mask! })),
      backward: await countDispatches(() => run('TtcAttentionGrad', { dctx: x.dy, q: x.q, k: x.k, v: x.v, ctx, lse, keyMask: x.mask! })),
    };
    tf.dispose([ctx, lse]);
  }
  fs.writeFileSync(file, JSON.stringify(result));
}

if (process.argv[1]?.endsWith('attention-child.ts')) {
  const [backend, file] = process.argv.slice(2);
  try {
    await main(backend as 'webgpu' | 'cpu', file);
    console.log(JSON.stringify({ ok: true }));
    process.exit(0); // a Dawn instance keeps the event loop alive
  } catch (e) {
    console.log(JSON.stringify({ error: e instanceof Error ? (e.stack ?? e.message) : String(e) }));
    process.exit(1);
  }
}
