/**
 * WGSL of the fused attention (flash-attention style; see ./attention.ts for the plan). Every
 * shader reads q, k, v, dctx, ctx in the projections' layout [B·T, H·dh] as vec4 (dh % 4 == 0):
 * element (b, t, h, c) is at row b·T + t, column h·dh + c, so no transposed copy is ever made.
 * Per-row statistics are indexed (b·H + h)·T + t.
 *
 * Tiles are compile-time constants (private arrays need constant sizes); the shader is specialised
 * per (dh, tile sizes, masked, mask dtype). Each function returns a `Kernel` of ./dispatch.ts, which
 * declares the bindings (outputs, inputs, then the uniforms `u.T`, `u.H`, `u.HD4`, `u.scale`: the
 * values of `attentionUniforms`) and caches the pipeline by the shader's text.
 */
import type { Binding, Kernel } from './dispatch.ts';

export interface AttnShape {
  /** dh / 4 */
  dh4: number;
  masked: boolean;
  /** the key mask's buffer element type (tfjs stores bool and int32 as i32) */
  maskType: 'f32' | 'i32';
}

/** Score of a padded key: the composite's additive bias (MASKED_SCORE). */
const MASKED = '-1e9';
/** Score of a key slot past T in the last tile: exp(OUT − m) is exactly 0. */
const OUT = '-3.0e38';

/** The uniforms of every attention shader; their values, in this order, from `attentionUniforms`. */
const UNIFORMS: Kernel['uniforms'] = [
  { name: 'T', type: 'i32' },
  { name: 'H', type: 'i32' },
  { name: 'HD4', type: 'i32' },
  { name: 'scale', type: 'f32' },
];

/** Uniform values for sequence length T, `heads` heads of a row `width` wide, score scale. */
export const attentionUniforms = (T: number, heads: number, width: number, scale: number): number[] => [T, heads, width / 4, scale];

const vec4 = (...names: string[]): Binding[] => names.map((name) => ({ name, type: 'vec4<f32>' }));
const f32 = (name: string): Binding => ({ name, type: 'f32' });

/** keyMask input (if any) and keyBias(b, j): the composite's (1 − mask)·(−1e9) for a key j < T. */
function maskParts(s: AttnShape): { input: Binding[]; fn: string } {
  if (!s.masked) return { input: [], fn: `fn keyBias(b: i32, j: i32) -> f32 { return 0.0; }` };
  return {
    input: [{ name: 'keyMask', type: s.maskType }],
    fn: `fn keyBias(b: i32, j: i32) -> f32 { return (1.0 - f32(keyMask[b * u.T + j])) * ${MASKED}; }`,
  };
}

/** Kernel-name suffix for a shape: dh, and the mask's element type if masked. */
const shapeKey = (s: AttnShape) => `dh${s.dh4 * 4}${s.masked ? `m${s.maskType}` : ''}`;

const sum4 = (x: string) => `(${x}.x + ${x}.y + ${x}.z + ${x}.w)`;

/**
 * Forward: one workgroup = BQ query rows (one thread each) of one (b, h); it walks the key tiles
 * (BK keys, K and V staged in workgroup memory), with the online softmax (running max m and sum l,
 * accumulator rescaled once per tile). Writes ctx and lse = m + log l.
 */
export function forwardKernel(s: AttnShape, BQ: number, BK: number): Kernel {
  const mask = maskParts(s);
  return {
    name: `ttcAttnFwd_${shapeKey(s)}_q${BQ}k${BK}`,
    outputs: [...vec4('ctx'), f32('lse')],
    inputs: [...vec4('q', 'k', 'v'), ...mask.input],
    uniforms: UNIFORMS,
    body: `
const DH4 = ${s.dh4};
const BQ = ${BQ};
const BK = ${BK};
var<workgroup> ks: array<vec4<f32>, ${BK * s.dh4}>;
var<workgroup> vs: array<vec4<f32>, ${BK * s.dh4}>;
var<workgroup> kb: array<f32, ${BK}>;
${mask.fn}

@compute @workgroup_size(${BQ})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let T = u.T;
  let HD4 = u.HD4;
  let b = i32(wg.y) / u.H;
  let h = i32(wg.y) % u.H;
  let i = i32(wg.x) * BQ + i32(li);
  let qBase = (b * T + min(i, T - 1)) * HD4 + h * DH4;
  var qr: array<vec4<f32>, DH4>;
  var acc: array<vec4<f32>, DH4>;
  for (var c = 0; c < DH4; c++) { qr[c] = q[qBase + c]; acc[c] = vec4<f32>(0.0); }
  var m = ${OUT};
  var l = 0.0;
  for (var k0 = 0; k0 < T; k0 += BK) {
    workgroupBarrier();
    for (var e = i32(li); e < BK * DH4; e += BQ) {
      let j = e / DH4;
      if (k0 + j < T) {
        let src = (b * T + k0 + j) * HD4 + h * DH4 + (e - j * DH4);
        ks[e] = k[src];
        vs[e] = v[src];
      } else {
        ks[e] = vec4<f32>(0.0);
        vs[e] = vec4<f32>(0.0);
      }
    }
    for (var j = i32(li); j < BK; j += BQ) {
      if (k0 + j < T) { kb[j] = keyBias(b, k0 + j); } else { kb[j] = ${OUT}; }
    }
    workgroupBarrier();
    var sc: array<f32, BK>;
    var tm = m;
    for (var j = 0; j < BK; j++) {
      var d = vec4<f32>(0.0);
      for (var c = 0; c < DH4; c++) { d += qr[c] * ks[j * DH4 + c]; }
      let sj = ${sum4('d')} * u.scale + kb[j];
      sc[j] = sj;
      tm = max(tm, sj);
    }
    let corr = exp(m - tm);
    l *= corr;
    for (var c = 0; c < DH4; c++) { acc[c] *= corr; }
    for (var j = 0; j < BK; j++) {
      let p = exp(sc[j] - tm);
      l += p;
      for (var c = 0; c < DH4; c++) { acc[c] += p * vs[j * DH4 + c]; }
    }
    m = tm;
  }
  if (i < T) {
    let inv = 1.0 / l;
    let oBase = (b * T + i) * HD4 + h * DH4;
    for (var c = 0; c < DH4; c++) { ctx[oBase + c] = acc[c] * inv; }
    lse[i32(wg.y) * T + i] = m + log(l);
  }
}
`,
  };
}

/**
 * Backward, step 1 (one thread per row; a workgroup = 64 rows of one (b, h)): stats[r] = (m, 1/l, D)
 * with D = rowsum(dctx ∘ ctx), so that the other two recompute p = exp(s − m)·(1/l); normally
 * m = lse, 1/l = 1. A row whose keys are all padding has lse ≈ −1e9, where float32 has lost log l
 * (its spacing there is 64); its scores are −1e9 + scale·q·k, which float32 rounds to exactly −1e9
 * while |scale·q·k| < 32, so the composite gives it the uniform distribution: m = −1e9, 1/l = 1/T.
 * (Branch-free: lavapipe runs an untaken branch's body under a lane mask.)
 */
export function statsKernel(s: AttnShape): Kernel {
  return {
    name: `ttcAttnStats_dh${s.dh4 * 4}`,
    outputs: [f32('stats')],
    inputs: [...vec4('dctx', 'ctx'), f32('lse')],
    uniforms: UNIFORMS,
    body: `
const DH4 = ${s.dh4};

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let T = u.T;
  let bh = i32(wg.y);
  let b = bh / u.H;
  let h = bh - b * u.H;
  let i = i32(wg.x) * 64 + i32(li);
  if (i >= T) { return; }
  let idx = bh * T + i;
  let base = (b * T + i) * u.HD4 + h * DH4;
  var dd = vec4<f32>(0.0);
  for (var c = 0; c < DH4; c++) { dd += dctx[base + c] * ctx[base + c]; }
  let L = lse[idx];
  let allPadded = L < -5e8;
  stats[idx * 3] = select(L, ${MASKED}, allPadded);
  stats[idx * 3 + 1] = select(1.0, 1.0 / f32(T), allPadded);
  stats[idx * 3 + 2] = ${sum4('dd')};
}
`,
  };
}

/**
 * Backward, step 2: one workgroup = BKEY key rows (one thread each: k, v, dk, dv in registers) of
 * one (b, h); it walks the query tiles (BQ rows of q and dctx plus their stats in workgroup
 * memory): p = exp(s − m)/l, dv += p·dctx, dS = p·(dctx·v − D), dk += dS·q·scale. No atomics.
 */
export function dkdvKernel(s: AttnShape, BKEY: number, BQ: number): Kernel {
  const mask = maskParts(s);
  return {
    name: `ttcAttnDkDv_${shapeKey(s)}_k${BKEY}q${BQ}`,
    outputs: vec4('dk', 'dv'),
    inputs: [...vec4('dctx', 'q', 'k', 'v'), f32('stats'), ...mask.input],
    uniforms: UNIFORMS,
    body: `
const DH4 = ${s.dh4};
const BKEY = ${BKEY};
const BQ = ${BQ};
var<workgroup> qs: array<vec4<f32>, ${BQ * s.dh4}>;
var<workgroup> gs: array<vec4<f32>, ${BQ * s.dh4}>;
var<workgroup> rm: array<f32, ${BQ}>;
var<workgroup> ril: array<f32, ${BQ}>;
var<workgroup> rd: array<f32, ${BQ}>;
${mask.fn}

@compute @workgroup_size(${BKEY})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let T = u.T;
  let HD4 = u.HD4;
  let b = i32(wg.y) / u.H;
  let h = i32(wg.y) % u.H;
  let j = i32(wg.x) * BKEY + i32(li);
  let jc = min(j, T - 1);
  let kBase = (b * T + jc) * HD4 + h * DH4;
  let bias = keyBias(b, jc);
  var kr: array<vec4<f32>, DH4>;
  var vr: array<vec4<f32>, DH4>;
  var gk: array<vec4<f32>, DH4>;
  var gv: array<vec4<f32>, DH4>;
  for (var c = 0; c < DH4; c++) { kr[c] = k[kBase + c]; vr[c] = v[kBase + c]; gk[c] = vec4<f32>(0.0); gv[c] = vec4<f32>(0.0); }
  for (var q0 = 0; q0 < T; q0 += BQ) {
    workgroupBarrier();
    for (var e = i32(li); e < BQ * DH4; e += BKEY) {
      let r = e / DH4;
      if (q0 + r < T) {
        let src = (b * T + q0 + r) * HD4 + h * DH4 + (e - r * DH4);
        qs[e] = q[src];
        gs[e] = dctx[src];
      } else {
        qs[e] = vec4<f32>(0.0);
        gs[e] = vec4<f32>(0.0);
      }
    }
    for (var r = i32(li); r < BQ; r += BKEY) {
      if (q0 + r < T) {
        let si = (i32(wg.y) * T + q0 + r) * 3;
        rm[r] = stats[si];
        ril[r] = stats[si + 1];
        rd[r] = stats[si + 2];
      } else {
        rm[r] = 3.0e38; // exp(s − 3e38) = 0: a row past T contributes nothing
        ril[r] = 0.0;
        rd[r] = 0.0;
      }
    }
    workgroupBarrier();
    for (var r = 0; r < BQ; r++) {
      var d = vec4<f32>(0.0);
      var e = vec4<f32>(0.0);
      for (var c = 0; c < DH4; c++) {
        d += qs[r * DH4 + c] * kr[c];
        e += gs[r * DH4 + c] * vr[c];
      }
      let p = exp(${sum4('d')} * u.scale + bias - rm[r]) * ril[r];
      let ds = p * (${sum4('e')} - rd[r]);
      for (var c = 0; c < DH4; c++) {
        gv[c] += p * gs[r * DH4 + c];
        gk[c] += ds * qs[r * DH4 + c];
      }
    }
  }
  if (j < T) {
    for (var c = 0; c < DH4; c++) {
      dk[kBase + c] = gk[c] * u.scale;
      dv[kBase + c] = gv[c];
    }
  }
}
`,
  };
}

/**
 * Backward, step 3: one workgroup = BQ query rows (q, dctx, dq in registers) of one (b, h),
 * walking the key tiles as the forward does: dq += dS·k·scale.
 */
export function dqKernel(s: AttnShape, BQ: number, BK: number): Kernel {
  const mask = maskParts(s);
  return {
    name: `ttcAttnDq_${shapeKey(s)}_q${BQ}k${BK}`,
    outputs: vec4('dq'),
    inputs: [...vec4('dctx', 'q', 'k', 'v'), f32('stats'), ...mask.input],
    uniforms: UNIFORMS,
    body: `
const DH4 = ${s.dh4};
const BQ = ${BQ};
const BK = ${BK};
var<workgroup> ks: array<vec4<f32>, ${BK * s.dh4}>;
var<workgroup> vs: array<vec4<f32>, ${BK * s.dh4}>;
var<workgroup> kb: array<f32, ${BK}>;
${mask.fn}

@compute @workgroup_size(${BQ})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let T = u.T;
  let HD4 = u.HD4;
  let b = i32(wg.y) / u.H;
  let h = i32(wg.y) % u.H;
  let i = i32(wg.x) * BQ + i32(li);
  let ic = min(i, T - 1);
  let qBase = (b * T + ic) * HD4 + h * DH4;
  let si = (i32(wg.y) * T + ic) * 3;
  let m = stats[si];
  let il = stats[si + 1];
  let D = stats[si + 2];
  var qr: array<vec4<f32>, DH4>;
  var gr: array<vec4<f32>, DH4>;
  var gq: array<vec4<f32>, DH4>;
  for (var c = 0; c < DH4; c++) { qr[c] = q[qBase + c]; gr[c] = dctx[qBase + c]; gq[c] = vec4<f32>(0.0); }
  for (var k0 = 0; k0 < T; k0 += BK) {
    workgroupBarrier();
    for (var e = i32(li); e < BK * DH4; e += BQ) {
      let j = e / DH4;
      if (k0 + j < T) {
        let src = (b * T + k0 + j) * HD4 + h * DH4 + (e - j * DH4);
        ks[e] = k[src];
        vs[e] = v[src];
      } else {
        ks[e] = vec4<f32>(0.0);
        vs[e] = vec4<f32>(0.0);
      }
    }
    for (var j = i32(li); j < BK; j += BQ) {
      if (k0 + j < T) { kb[j] = keyBias(b, k0 + j); } else { kb[j] = ${OUT}; }
    }
    workgroupBarrier();
    let nk = min(BK, T - k0); // a run-time bound: lavapipe's LLVM would otherwise unroll BK × DH4
    for (var j = 0; j < nk; j++) {
      var d = vec4<f32>(0.0);
      var e = vec4<f32>(0.0);
      for (var c = 0; c < DH4; c++) {
        d += qr[c] * ks[j * DH4 + c];
        e += gr[c] * vs[j * DH4 + c];
      }
      let p = exp(${sum4('d')} * u.scale + kb[j] - m) * il;
      let ds = p * (${sum4('e')} - D);
      for (var c = 0; c < DH4; c++) { gq[c] += ds * ks[j * DH4 + c]; }
    }
  }
  if (i < T) {
    for (var c = 0; c < DH4; c++) { dq[qBase + c] = gq[c] * u.scale; }
  }
}
`,
  };
}
