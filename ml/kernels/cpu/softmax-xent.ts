/**
 * TtcSoftmaxXent / TtcSoftmaxXentGrad on cpu and wasm: per row max, Σexp and logsumexp in one
 * read of the logits (plus one for the max); the gradient is the closed form
 * (softmax − onehot)·dloss written in one pass from the saved logsumexp; exp is ./exp.ts's. A label outside [0, V)
 * contributes no one-hot, as tf.oneHot gives (loss 0, gradient softmax·dloss).
 */
import type { FusedImpl } from '../fused.ts';
import { fastExp } from './exp.ts';
import { kernel } from './io.ts';

export function softmaxXentImpl(backend: string): FusedImpl {
  return {
    op: 'softmaxXent',
    backend,
    describe: 'JS row loops, table+polynomial exp, closed-form gradient from the saved logsumexp',
    kernels: [
      kernel('TtcSoftmaxXent', backend, (io, { logits, labels }) => {
        const [M, V] = logits.shape as [number, number];
        const lo = io.alloc([M]);
        const so = io.alloc([M]);
        const X = io.f32(logits), L = io.i32(labels), loss = lo.view(), lse = so.view();
        for (let r = 0; r < M; r++) {
          const o = r * V;
          let mx = -Infinity;
          for (let c = 0; c < V; c++) if (X[o + c] > mx) mx = X[o + c];
          let s = 0;
          for (let c = 0; c < V; c++) s += fastExp(X[o + c] - mx);
          const z = mx + Math.log(s);
          const y = L[r];
          lse[r] = z;
          loss[r] = y >= 0 && y < V ? z - X[o + y] : 0;
        }
        return [lo.info, so.info];
      }),
      kernel('TtcSoftmaxXentGrad', backend, (io, { dloss, logits, labels, lse }) => {
        const [M, V] = logits.shape as [number, number];
        const go = io.alloc([M, V]);
        const DL = io.f32(dloss), X = io.f32(logits), L = io.i32(labels), Z = io.f32(lse), G = go.view();
        for (let r = 0; r < M; r++) {
          const o = r * V;
          const d = DL[r], z = Z[r];
          for (let c = 0; c < V; c++) G[o + c] = fastExp(X[o + c] - z) * d;
          const y = L[r];
          if (y >= 0 && y < V) G[o + y] -= d;
        }
        return [go.info];
      }),
    ],
    supports: ({ shapes }) => shapes[0].length === 2 && shapes[0][1] > 0,
  };
}
