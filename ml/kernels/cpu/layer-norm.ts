/**
 * TtcLayerNorm / TtcLayerNormGrad on cpu and wasm: one pass over each row forward (mean, variance,
 * normalise), two passes backward; γ/β gradients are column sums accumulated row by row in float64
 * (row-major order: no strided reads, the accumulators stay in L1 for D ≤ a few thousand).
 */
import type { FusedImpl } from '../fused.ts';
import { kernel } from './io.ts';

export function layerNormImpl(backend: string): FusedImpl {
  return {
    op: 'layerNorm',
    backend,
    describe: 'JS row loops, float64 column sums for dγ/dβ',
    kernels: [
      kernel('TtcLayerNorm', backend, (io, { x, gamma, beta }, attrs) => {
        const [N, D] = x.shape as [number, number];
        const eps = attrs.eps as number;
        const yo = io.alloc([N, D]);
        const mo = io.alloc([N]);
        const ro = io.alloc([N]);
        const X = io.f32(x), G = io.f32(gamma), B = io.f32(beta);
        const Y = yo.view(), M = mo.view(), R = ro.view();
        for (let r = 0; r < N; r++) {
          const o = r * D;
          let s = 0;
          for (let c = 0; c < D; c++) s += X[o + c];
          const mean = s / D;
          let q = 0;
          for (let c = 0; c < D; c++) {
            const d = X[o + c] - mean;
            q += d * d;
          }
          const rstd = 1 / Math.sqrt(q / D + eps);
          for (let c = 0; c < D; c++) Y[o + c] = (X[o + c] - mean) * rstd * G[c] + B[c];
          M[r] = mean;
          R[r] = rstd;
        }
        return [yo.info, mo.info, ro.info];
      }),
      kernel('TtcLayerNormGrad', backend, (io, { dy, x, gamma, mean, rstd }) => {
        const [N, D] = x.shape as [number, number];
        const dxo = io.alloc([N, D]);
        const dgo = io.alloc([D]);
        const dbo = io.alloc([D]);
        const DY = io.f32(dy), X = io.f32(x), G = io.f32(gamma), M = io.f32(mean), R = io.f32(rstd);
        const DX = dxo.view();
        const dg = new Float64Array(D);
        const db = new Float64Array(D);
        for (let r = 0; r < N; r++) {
          const o = r * D;
          const mu = M[r], rs = R[r];
          let s1 = 0, s2 = 0;
          for (let c = 0; c < D; c++) {
            const g = DY[o + c];
            const xh = (X[o + c] - mu) * rs;
            const gg = g * G[c];
            s1 += gg;
            s2 += gg * xh;
            dg[c] += g * xh;
            db[c] += g;
          }
          const m1 = s1 / D, m2 = s2 / D;
          for (let c = 0; c < D; c++) DX[o + c] = rs * (DY[o + c] * G[c] - m1 - (X[o + c] - mu) * rs * m2);
        }
        dgo.view().set(dg);
        dbo.view().set(db);
        return [dxo.info, dgo.info, dbo.info];
      }),
    ],
    supports: ({ shapes }) => shapes[0].length === 2 && shapes[0][1] > 0,
  };
}
