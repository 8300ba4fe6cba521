/**
 * TtcEmbeddingGrad on cpu and wasm: a zeroed [rows, D] table, each dy row added into its id's row
 * (ids outside [0, rows) are dropped). Work is O(rows·D) for the zeroing plus O(N·D) adds, where
 * tfjs's scatterND also sorts/updates through generic index arithmetic.
 */
import type { FusedImpl } from '../fused.ts';
import { kernel } from './io.ts';

export function embeddingGradImpl(backend: string): FusedImpl {
  return {
    op: 'embeddingGrad',
    backend,
    describe: 'JS row scatter-add',
    kernels: [
      kernel('TtcEmbeddingGrad', backend, (io, { dy, ids }, attrs) => {
        const [N, D] = dy.shape as [number, number];
        const rows = attrs.rows as number;
        const out = io.alloc([rows, D]);
        const DY = io.f32(dy), I = io.i32(ids), T = out.view();
        T.fill(0);
        for (let i = 0; i < N; i++) {
          const id = I[i];
          if (!(id >= 0 && id < rows)) continue;
          const o = id * D, s = i * D;
          for (let c = 0; c < D; c++) T[o + c] += DY[s + c];
        }
        return [out.info];
      }),
    ],
    supports: ({ shapes }) => shapes[0].length === 2,
  };
}
