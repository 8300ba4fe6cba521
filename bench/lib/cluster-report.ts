/**
 * bench:cluster's measurements as one record (what --json writes) and the report printed from it:
 * link check, all-reduce vs the bound, the α–β fits, the step's scaling efficiency next to the
 * model's, the prediction to 1,024 workers, and a closing summary of the ratios. Computing the
 * fits and the prediction here (not while measuring) lets `bench/cluster.ts --report FILE`
 * re-print a saved run.
 */
import { fitAlphaBeta, ringBoundSeconds, stepSeconds, type AlphaBetaFit, type Sample, type StepModel, type StepVariant } from './alpha-beta.ts';
import { predict, type PredictionBasis, type PredictionRow } from './scaling-predict.ts';
import type { LinkShape } from './netns.ts';
import { median } from './median.ts';

export interface Point { shape: string; rateBps: number; delayMs: number; N: number; MiB: number; boundMs: number; ringMs: number[]; /** a ring rank's CPU time / the call's wall time, median over ranks, per rep */ ringCpu?: number[]; starMs: number[]; tcpRingMs: number[] }
export interface StepRow { shape: string; rateBps: number; N: number; variant: StepVariant; stepMs: number; stepsMs: number[]; updateMs: number; updateNsPerParam: number }

export interface ClusterResult {
  config: {
    ranks: number[]; sizesMiB: number[]; shapes: LinkShape[]; reps: number; computeMs: number; steps: number; buckets: number;
    params: number; segmentBytes: number; forwardShare: number; netem: boolean; cores: number; cpu: string; node: string; seconds: number;
  };
  notes: string[];
  /** single-stream MB/s per link name */
  linkCheck: Record<string, number[]>;
  points: Point[];
  steps: StepRow[];
  /** filled by analyse() */
  fits?: Record<string, { ab: AlphaBetaFit; abg: AlphaBetaFit }>;
  basis?: PredictionBasis;
  prediction?: PredictionRow[];
}

/**
 * What the prediction assumes beyond this bench's measurements: BERT-base's 110M parameters and the
 * H200 measurement of bench:gpu (bench/results/gpu-2026-11-27-h200-views: L12 d768 B32×128 on
 * webgpu, forward + backward + gradient read-back 1,808 ms; clip + AdamW on 8 threads 184 ms for
 * 91.9M parameters = 2.0 ns/param).
 */
export const BERT_BASE = { params: 110e6, computeSeconds: 1.808, updateSecondsPerParam: 184e-3 / 91_898_432 };

export const shapeName = (s: LinkShape) => `${s.rateBps / 1e9} Gbit/s${s.delayMs ? ` + ${s.delayMs} ms` : ''}`;
const f = (x: number | undefined, d = 0) => (x !== undefined && Number.isFinite(x) ? x.toFixed(d) : '-');
const MiB = 1 << 20;
// TCP over Ethernet at MTU 1500 carries 1448 payload bytes per 1514-byte frame tbf counts
const TCP_GOODPUT = 1448 / 1514;

/** Values that replace this run's in the prediction (e.g. from a quieter host), with where they come from. */
export interface BasisOverrides { alphaSeconds?: number; ceilingBytesPerSecond?: number; linkOverhead?: number; source?: string }

/**
 * Fit α–β per link shape and predict from: α and β·B of the slowest rate without delay (the
 * link-bound fit), the software ceiling 1/β of the fastest rate (where the link does not bind),
 * and BERT_BASE; `o` replaces any of the measured three.
 */
export function analyse(r: ClusterResult, o: BasisOverrides = {}): ClusterResult {
  const fits: NonNullable<ClusterResult['fits']> = {};
  for (const s of r.config.shapes) {
    const name = shapeName(s);
    const samples: Sample[] = r.points.filter((p) => p.shape === name).map((p) => ({ N: p.N, bytes: p.MiB * MiB, seconds: median(p.ringMs) / 1e3 }));
    if (samples.length >= 3) fits[name] = { ab: fitAlphaBeta(samples), abg: fitAlphaBeta(samples, { gamma: true }) };
  }
  const plain = r.config.shapes.filter((s) => s.delayMs === 0 && fits[shapeName(s)]).sort((a, b) => a.rateBps - b.rateBps);
  const anchor = plain[0], fastest = plain[plain.length - 1];
  if (!anchor || !fastest) return { ...r, fits };
  const fit = fits[shapeName(anchor)]!.abg;
  const basis: PredictionBasis = {
    alpha: o.alphaSeconds ?? fit.alpha, gamma: fit.gamma, linkOverhead: o.linkOverhead ?? fit.beta * (anchor.rateBps / 8),
    ceilingBytesPerSecond: o.ceilingBytesPerSecond ?? (fastest === anchor ? Infinity : 1 / fits[shapeName(fastest)]!.abg.beta),
    computeSeconds: BERT_BASE.computeSeconds, forwardShare: r.config.forwardShare, params: BERT_BASE.params, bytesPerParam: 4,
    updateSecondsPerParam: BERT_BASE.updateSecondsPerParam, buckets: r.config.buckets,
    source: o.source ?? `this run: α and β·B from the ${shapeName(anchor)} fit, the ceiling from the ${shapeName(fastest)} fit`,
  };
  return { ...r, fits, basis, prediction: predict(basis) };
}

/** --alpha-ms, --ceiling-mbps, --link-overhead, --basis-source: the overrides from the command line. */
export function overridesFrom(opt: (name: string) => string | undefined): BasisOverrides {
  const num = (n: string) => { const v = opt(n); return v === undefined ? undefined : Number(v); };
  const a = num('--alpha-ms'), c = num('--ceiling-mbps'), l = num('--link-overhead'), src = opt('--basis-source');
  return {
    ...(a !== undefined ? { alphaSeconds: a / 1e3 } : {}), ...(c !== undefined ? { ceilingBytesPerSecond: c * 1e6 } : {}),
    ...(l !== undefined ? { linkOverhead: l } : {}), ...(src ? { source: src } : {}),
  };
}

/** The prediction table as Markdown. */
export function predictionTable(rows: PredictionRow[]): string[] {
  const out = [
    '| Gbit/s | N | all-reduce s, flat ring | 2-D ring | eff. all-reduce | all-reduce + overlap | ZeRO-1 | ZeRO-1 + overlap | ZeRO-1 + overlap, 2-D ring | same, 4 channels | step s, last column |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const p of rows) {
    const e = p.efficiency;
    out.push(`| ${p.gbit} | ${p.N} | ${f(p.allReduce, 3)} | ${f(p.allReduce2d, 3)} | ${f(e.allreduce, 2)} | ${f(e['allreduce-overlap'], 2)} | ${f(e.sharded, 2)} | ${f(e['sharded-overlap'], 2)} | ${f(e['sharded-overlap-2d'], 2)} | ${f(e['sharded-overlap-2d-4ch'], 2)} | ${f(p.step['sharded-overlap-2d-4ch'], 3)} |`);
  }
  return out;
}

export function report(r: ClusterResult): string {
  const out: string[] = [];
  const line = (s = '') => out.push(s);
  const linkMBps = (name: string) => median(r.linkCheck[name] ?? [NaN]);
  const { shapes, params, computeMs, buckets, forwardShare } = r.config;

  line('## Links (one TCP stream rank 0 → rank 1, through both shaped veth ends)');
  line('| link | configured MB/s | TCP payload ceiling MB/s (1448/1514) | measured MB/s (median) | measured / configured |');
  line('|---|---|---|---|---|');
  for (const s of shapes) { const n = shapeName(s); line(`| ${n} | ${f(s.rateBps / 8e6)} | ${f((s.rateBps / 8e6) * TCP_GOODPUT)} | ${f(linkMBps(n))} | ${f(linkMBps(n) / (s.rateBps / 8e6), 3)} |`); }
  line();
  line('## All-reduce vs the bandwidth-optimal bound 2(N−1)/N·S/B (B = configured rate; "vs TCP": B = the measured stream rate)');
  line('"ring CPU": a ring rank\'s CPU time (user + kernel) as a share of the call\'s wall time, median over ranks; N ranks share the machine\'s cores');
  line('| link | N | MiB | bound ms | ring ms | ring / bound | ring / bound (vs TCP) | ring CPU | raw TCP ring ms | raw TCP ring / bound | star ms | star / bound |');
  line('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const p of r.points) {
    const ring = median(p.ringMs), star = p.starMs.length ? median(p.starMs) : NaN, raw = median(p.tcpRingMs);
    const tcpBound = ringBoundSeconds(p.N, p.MiB * MiB, linkMBps(p.shape) * 1e6) * 1e3;
    line(`| ${p.shape} | ${p.N} | ${p.MiB} | ${f(p.boundMs, 1)} | ${f(ring, 1)} | ${f(ring / p.boundMs, 3)} | ${f(ring / tcpBound, 3)} | ${p.ringCpu?.length ? `${f(100 * median(p.ringCpu))}%` : '-'} | ${f(raw, 1)} | ${f(raw / p.boundMs, 3)} | ${f(star, 1)} | ${f(star / p.boundMs, 2)} |`);
  }
  line();
  line('## α–β fit of the ring: t(N, S) = 2(N−1)·α + 2(N−1)/N·S·β (+ γ·S), least squares on relative error, per link');
  line('| link | model | α ms | β ns/B | 1/β MB/s | 1/β ÷ configured | γ ns/B | rms rel. residual | residuals (%, in table order) |');
  line('|---|---|---|---|---|---|---|---|---|');
  for (const [name, { ab, abg }] of Object.entries(r.fits ?? {})) {
    const rate = shapes.find((s) => shapeName(s) === name)!.rateBps / 8;
    for (const [label, m] of [['α, β', ab], ['α, β, γ', abg]] as const) {
      line(`| ${name} | ${label} | ${f(m.alpha * 1e3, 3)} | ${f(m.beta * 1e9, 3)} | ${f(1 / m.beta / 1e6)} | ${f(1 / m.beta / rate, 3)} | ${f(m.gamma * 1e9, 3)} | ${f(m.rmsRel, 3)} | ${m.relResiduals.map((x) => f(100 * x)).join(' ')} |`);
    }
  }
  line();

  const base = (v: StepVariant) => r.steps.find((x) => x.N === 1 && x.variant === v);
  const eff = (x: StepRow) => base(x.variant)!.stepMs / x.stepMs;
  if (base('allreduce')) {
    const ns = base('allreduce')!.updateNsPerParam;
    line(`## End-to-end step: default model (${params} params, ${f((params * 4) / 1e6, 2)} MB f32 gradients), compute ${computeMs} ms/step (fixed, per worker), AdamW ${f(ns, 2)} ns/param here`);
    line('scaling efficiency = T_step(1) / T_step(N) at fixed per-worker batch (ZeRO-1 can pass 1: each worker updates 1/N of the parameters); "model" = that link\'s α–β–γ fit replayed through the same schedule');
    line('| link | N | variant | step ms | efficiency | model step ms | model efficiency |');
    line('|---|---|---|---|---|---|---|');
    for (const x of r.steps) {
      const fit = r.fits?.[x.shape]?.abg;
      const sm: StepModel | undefined = fit && { net: fit, computeSeconds: computeMs / 1e3, forwardShare, params, bytesPerParam: 4, updateSecondsPerParam: ns * 1e-9, buckets };
      const model = sm ? stepSeconds(sm, x.variant, x.N) * 1e3 : NaN;
      const model1 = sm ? stepSeconds(sm, x.variant, 1) * 1e3 : NaN;
      line(`| ${x.shape} | ${x.N} | ${x.variant} | ${f(x.stepMs, 1)} | ${f(eff(x), 3)} | ${f(model, 1)} | ${f(model1 / model, 3)} |`);
    }
    line();
  }
  if (r.basis && r.prediction) {
    const b = r.basis;
    line(`## Prediction: BERT-base (${b.params / 1e6}M params, f32 gradients ${f((b.params * 4) / 1e6)} MB), compute ${b.computeSeconds} s/step per worker and AdamW ${f(b.updateSecondsPerParam * 1e9, 2)} ns/param (H200 host, 8 threads: bench/results/gpu-2026-11-27-h200-views; ZeRO-1 does 1/N of it), ${b.buckets} buckets`);
    line(`basis: α = ${f(b.alpha * 1e3, 3)} ms, γ = ${f(b.gamma * 1e9, 3)} ns/B, β = max(${f(b.linkOverhead, 2)}/B, 1/(channels × ${f(b.ceilingBytesPerSecond / 1e6)} MB/s)); ${b.source}`);
    out.push(...predictionTable(r.prediction));
    line();
  }
  line('## Summary');
  for (const s of shapes) {
    const name = shapeName(s);
    const big = Math.max(...r.config.sizesMiB);
    const pts = r.points.filter((p) => p.shape === name && p.MiB === big);
    if (pts.length) line(`ring / bound at ${name}, ${big} MiB: ${pts.map((p) => `N=${p.N} ${f(median(p.ringMs) / p.boundMs, 2)}`).join(', ')} (raw TCP ring: ${pts.map((p) => f(median(p.tcpRingMs) / p.boundMs, 2)).join(', ')}; star: ${pts.map((p) => f(median(p.starMs) / p.boundMs, 2)).join(', ')})`);
    const st = r.steps.filter((x) => x.shape === name);
    if (st.length && base('allreduce')) {
      const ns = [...new Set(st.map((x) => x.N))];
      line(`scaling efficiency at ${name} (N = ${ns.join(', ')}): ${(['allreduce', 'allreduce-overlap', 'sharded', 'sharded-overlap'] as StepVariant[]).map((v) => `${v} ${ns.map((n) => f(eff(st.find((x) => x.N === n && x.variant === v)!), 2)).join('/')}`).join('; ')}`);
    }
    const fit = r.fits?.[name]?.ab;
    if (fit) line(`α–β at ${name}: α = ${f(fit.alpha * 1e3, 3)} ms, β = ${f(fit.beta * 1e9, 3)} ns/B (1/β = ${f(1 / fit.beta / 1e6)} MB/s of ${f(s.rateBps / 8e6)} configured), rms residual ${f(100 * fit.rmsRel)}%`);
  }
  for (const n of r.notes) line(`note: ${n}`);
  const c = r.config;
  line(`machine: ${c.cores} cores (${c.cpu}), node ${c.node}; segment ${c.segmentBytes} B; ${c.reps} reps (median; collective time = slowest rank); total ${f(c.seconds, 1)} s`);
  return out.join('\n');
}
