/**
 * The α–β cost model of a ring all-reduce and of a data-parallel step built on it (pure functions,
 * no I/O: tests/unit/alpha-beta.test.ts).
 *
 *   ring all-reduce of S bytes over N ranks:  t = 2(N−1)·α + 2(N−1)/N·S·β  (+ γ·S)
 *
 * α is the cost of one of the 2(N−1) ring steps that does not depend on size (latency, framing,
 * scheduling), β the time per byte a link carries (1/β = the bandwidth the ring achieves), γ a
 * per-byte cost every rank pays once per call whatever N (copying, a pass over the buffer).
 * The bandwidth-optimal bound is the β term alone with β = 1/B.
 */

export interface Sample { N: number; bytes: number; seconds: number }

export interface AlphaBetaFit {
  alpha: number;
  beta: number;
  /** 0 unless fitted with `gamma: true` */
  gamma: number;
  /** (model − measured) / measured, per sample */
  relResiduals: number[];
  /** root mean square of relResiduals */
  rmsRel: number;
}

/** 2(N−1)/N · S / B: the least time any all-reduce needs when each rank's NIC moves B bytes/s each way. */
export function ringBoundSeconds(N: number, bytes: number, bytesPerSecond: number): number {
  return N <= 1 ? 0 : ((2 * (N - 1)) / N) * bytes / bytesPerSecond;
}

export function ringSeconds(m: Pick<AlphaBetaFit, 'alpha' | 'beta' | 'gamma'>, N: number, bytes: number): number {
  if (N <= 1) return 0;
  return 2 * (N - 1) * m.alpha + ((2 * (N - 1)) / N) * bytes * m.beta + m.gamma * bytes;
}

/** A 2-D ring (r × c ranks, r·c = N): the same bytes per link, 2(r−1) + 2(c−1) latency steps instead of 2(N−1). */
export function ring2dSeconds(m: Pick<AlphaBetaFit, 'alpha' | 'beta' | 'gamma'>, N: number, bytes: number): number {
  if (N <= 1) return 0;
  let r = Math.floor(Math.sqrt(N));
  while (N % r !== 0) r--;
  const c = N / r;
  return 2 * (r - 1 + c - 1) * m.alpha + ((2 * (N - 1)) / N) * bytes * m.beta + m.gamma * bytes;
}

/** Solve A x = b (small, dense) by Gaussian elimination with partial pivoting. */
function solve(A: number[][], b: number[]): number[] {
  const n = b.length;
  const M = A.map((row, i) => [...row, b[i]!]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let i = c + 1; i < n; i++) if (Math.abs(M[i]![c]!) > Math.abs(M[p]![c]!)) p = i;
    [M[c], M[p]] = [M[p]!, M[c]!];
    const piv = M[c]![c]!;
    if (Math.abs(piv) < 1e-300) throw new Error('α–β fit: the samples do not determine the model (vary N and size)');
    for (let i = 0; i < n; i++) {
      if (i === c) continue;
      const f = M[i]![c]! / piv;
      for (let k = c; k <= n; k++) M[i]![k]! -= f * M[c]![k]!;
    }
  }
  return M.map((row, i) => row[n]! / row[i]!);
}

/**
 * Least squares on relative error (each sample weighted by 1/t, so small messages, which fix α,
 * count as much as large ones, which fix β). Coefficients are kept ≥ 0: one that comes out
 * negative is dropped and the rest refitted.
 */
export function fitAlphaBeta(samples: Sample[], opts: { gamma?: boolean } = {}): AlphaBetaFit {
  const feats = (s: Sample) => [2 * (s.N - 1), ((2 * (s.N - 1)) / s.N) * s.bytes, s.bytes];
  let active = opts.gamma ? [0, 1, 2] : [0, 1];
  for (;;) {
    if (active.length === 0) throw new Error('α–β fit: no coefficient stays non-negative');
    // columns scaled to unit size so the normal equations are well conditioned
    const scale = active.map((j) => Math.max(...samples.map((s) => Math.abs(feats(s)[j]! / s.seconds))) || 1);
    const rows = samples.map((s) => active.map((j, k) => feats(s)[j]! / s.seconds / scale[k]!));
    const AtA = active.map((_, a) => active.map((__, b) => rows.reduce((acc, r) => acc + r[a]! * r[b]!, 0)));
    const Atb = active.map((_, a) => rows.reduce((acc, r) => acc + r[a]!, 0));
    const x = solve(AtA, Atb).map((v, k) => v / scale[k]!);
    const neg = x.findIndex((v) => v < 0);
    if (neg >= 0) { active = active.filter((_, k) => k !== neg); continue; }
    const coef = [0, 0, 0];
    active.forEach((j, k) => { coef[j] = x[k]!; });
    const model = { alpha: coef[0]!, beta: coef[1]!, gamma: coef[2]! };
    const relResiduals = samples.map((s) => (ringSeconds(model, s.N, s.bytes) - s.seconds) / s.seconds);
    const rmsRel = Math.sqrt(relResiduals.reduce((a, r) => a + r * r, 0) / relResiduals.length);
    return { ...model, relResiduals, rmsRel };
  }
}

// ---- a data-parallel step on top of the model --------------------------------------------------

export type StepVariant = 'allreduce' | 'allreduce-overlap' | 'sharded' | 'sharded-overlap';

export interface StepModel {
  /** collective cost: α, β (s/byte at the link rate in question), γ */
  net: Pick<AlphaBetaFit, 'alpha' | 'beta' | 'gamma'>;
  /** forward + backward seconds per step, per worker (fixed per-worker batch) */
  computeSeconds: number;
  forwardShare: number;
  params: number;
  /** bytes per gradient element on the wire (4 f32, 2 bf16) */
  bytesPerParam: number;
  /** optimizer update cost, seconds per parameter updated */
  updateSecondsPerParam: number;
  buckets: number;
  /** the collective's time for N ranks and a size; default: the flat ring */
  collective?: (N: number, bytes: number) => number;
}

/**
 * Step time of one variant at N workers, by replaying the schedule of ttc's step engine
 * (ml/train/data-parallel.ts, as bench/lib/step-sim.ts drives it): collectives one at a time in
 * issue order; the previous step's weight all-gathers (ZeRO-1) are waited for before the forward
 * (the weights are needed whole); each overlap bucket's collective starts once its backward slice
 * is done; the update runs once every bucket has landed. Reduce-scatter and all-gather each cost
 * half an all-reduce (the same bytes per link, half the steps).
 */
export function stepSeconds(m: StepModel, variant: StepVariant, N: number): number {
  const ar = m.collective ?? ((n: number, b: number) => ringSeconds(m.net, n, b));
  const overlap = variant.endsWith('overlap');
  const sharded = variant.startsWith('sharded');
  const nb = overlap ? Math.max(1, m.buckets) : 1;
  const bucketBytes = (m.params * m.bytesPerParam) / nb;
  const comm = N <= 1 ? 0 : sharded ? ar(N, bucketBytes) / 2 : ar(N, bucketBytes);
  const update = (sharded ? m.params / N : m.params) * m.updateSecondsPerParam;
  const fwd = m.computeSeconds * m.forwardShare, bwd = m.computeSeconds - fwd;
  // the previous step's all-gathers, then the forward
  let t = sharded ? nb * comm : 0;
  let queue = t;
  t += fwd;
  for (let b = 0; b < nb; b++) {
    t += bwd / nb;
    queue = Math.max(queue, t) + comm;
  }
  return Math.max(t, queue) + update;
}

/** Scaling efficiency at fixed per-worker batch: T_step(1) / T_step(N). */
export function scalingEfficiency(m: StepModel, variant: StepVariant, N: number): number {
  return stepSeconds(m, variant, 1) / stepSeconds(m, variant, N);
}
