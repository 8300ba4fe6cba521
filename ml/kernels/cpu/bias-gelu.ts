/**
 * TtcBiasGelu / TtcBiasGeluGrad on cpu and wasm. Exact-erf GELU with erf from Abramowitz & Stegun
 * 7.1.26 (|error| ≤ 1.5e-7, the formula tfjs's own Erf kernels use); its exp(−u²/2) is also the
 * Gaussian density of the derivative, so the backward recomputes u = x + b and needs one exp per
 * element for both Φ(u) and φ(u): dx = dy·(Φ(u) + u·φ(u)), dbias = column sums of dx (float64).
 */
import type { FusedImpl } from '../../model/fused.ts';
import { kernel } from './io.ts';

const P = 0.3275911;
const A1 = 0.254829592, A2 = -0.284496736, A3 = 1.421413741, A4 = -1.453152027, A5 = 1.061405429;
const INV_SQRT2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

export function biasGeluImpl(backend: string): FusedImpl {
  return {
    op: 'biasGelu',
    backend,
    describe: 'JS loop, A&S erf sharing one exp with the derivative, float64 dbias',
    kernels: [
      kernel('TtcBiasGelu', backend, (io, { x, bias }) => {
        const [N, F] = x.shape as [number, number];
        const yo = io.alloc([N, F]);
        const X = io.f32(x), Bv = io.f32(bias), Y = yo.view();
        for (let r = 0; r < N; r++) {
          const o = r * F;
          for (let c = 0; c < F; c++) {
            const u = X[o + c] + Bv[c];
            const t = 1 / (1 + P * Math.abs(u) * INV_SQRT2);
            // tail = 1 − erf(|u|/√2)
            const tail = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5)))) * Math.exp(-0.5 * u * u);
            const cdf = u >= 0 ? 1 - 0.5 * tail : 0.5 * tail;
            Y[o + c] = u * cdf;
          }
        }
        return [yo.info];
      }),
      kernel('TtcBiasGeluGrad', backend, (io, { dy, x, bias }) => {
        const [N, F] = x.shape as [number, number];
        const dxo = io.alloc([N, F]);
        const dbo = io.alloc([F]);
        const DY = io.f32(dy), X = io.f32(x), Bv = io.f32(bias), DX = dxo.view();
        const db = new Float64Array(F);
        for (let r = 0; r < N; r++) {
          const o = r * F;
          for (let c = 0; c < F; c++) {
            const u = X[o + c] + Bv[c];
            const t = 1 / (1 + P * Math.abs(u) * INV_SQRT2);
            const e = Math.exp(-0.5 * u * u);
            const tail = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5)))) * e;
            const cdf = u >= 0 ? 1 - 0.5 * tail : 0.5 * tail;
            const g = DY[o + c] * (cdf + u * e * INV_SQRT_2PI);
            DX[o + c] = g;
            db[c] += g;
          }
        }
        dbo.view().set(db);
        return [dxo.info, dbo.info];
      }),
    ],
    supports: ({ shapes }) => shapes[0].length === 2,
  };
}
