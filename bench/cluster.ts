/**
 * A cluster on one machine with real link limits: every rank in its own network namespace, its
 * NIC a veth pair into a bridge, rate-limited with tc (bench/lib/netns.ts). Root only; skipped
 * with one line otherwise.
 *
 *   npm run bench:cluster                    # N = 2,3,4,8 × 1,16,64 MiB × 1 and 10 Gbit/s, steps (≈ 15–25 min on 2 cores)
 *   npm run bench:cluster -- --quick         # N = 2,4 × 1,16 MiB × 1 Gbit/s, steps (≈ 3 min)
 *   npm run bench:cluster -- --help
 *
 * Measures (1) ring and star all-reduce against the bandwidth-optimal bound 2(N−1)/N·S/B, with a
 * plain-TCP ring over the same links as the anchor and a single TCP stream as the check that the
 * configured rate holds; (2) fits the α–β model to the ring's times; (3) runs a data-parallel step
 * of the default model with a fixed compute time (bench/lib/step-sim.ts) for N = 1 and every N:
 * all-reduce, ZeRO-1 sharded, each with and without overlap, and prints scaling efficiency
 * T_step(1)/T_step(N) next to the model's prediction; (4) predicts 8–1,024 workers at 10/25/100
 * Gbit/s for BERT-base gradients (bench/lib/scaling-predict.ts; docs/scaling.md).
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { randomBytes } from 'node:crypto';
import { benchArgs } from './lib/args.ts';
import { NetCluster, netemAvailable, staleNamespaces, unavailableReason, type LinkShape } from './lib/netns.ts';
import { RankProc } from './lib/rank-proc.ts';
import { fitAlphaBeta, ringBoundSeconds, stepSeconds, type AlphaBetaFit, type Sample, type StepModel, type StepVariant } from './lib/alpha-beta.ts';
import { STEP_VARIANTS, type StepPlan } from './lib/step-sim.ts';
import { predict, type PredictionBasis, type PredictionRow } from './lib/scaling-predict.ts';
import { resolveConfig } from '../core/config/load.ts';
import { parameterCount } from '../ml/model/spec.ts';

const { flag, opt } = benchArgs();
if (flag('--help') || flag('-h')) {
  console.log([
    'usage: npm run bench:cluster -- [options]   (root: network namespaces, veth, tc)',
    '  --quick             N = 2,4 × 1,16 MiB × 1 Gbit/s, 2 reps',
    '  --ranks 2,3,4,8     world sizes',
    '  --sizes 1,16,64     all-reduce sizes, MiB',
    '  --rates 1,10        link rates, Gbit/s (each rank\'s NIC, each direction)',
    '  --delays 0.1,1      one-way delays, ms, run in addition to 0 (needs sch_netem; skipped with a note without it)',
    '  --reps 3            timed repetitions per point (after one warm-up)',
    '  --compute-ms 91     simulated forward+backward per step (91 = this model\'s step on an H200, STACK-NOTES)',
    '  --steps 6           timed steps per variant (after 2 warm-up steps)',
    '  --buckets 4         gradient buckets of the overlap variants',
    '  --no-star  --no-steps   leave those parts out',
    '  --json out.json     every number as JSON',
  ].join('\n'));
  process.exit(0);
}

const quick = flag('--quick');
const list = (name: string, def: string) => (opt(name) ?? def).split(',').filter(Boolean).map(Number);
const ranks = list('--ranks', quick ? '2,4' : '2,3,4,8');
const sizesMiB = list('--sizes', quick ? '1,16' : '1,16,64');
const rates = list('--rates', quick ? '1' : '1,10');
const delays = list('--delays', quick ? '' : '0.1,1');
const reps = Number(opt('--reps') ?? (quick ? 2 : 3));
const computeMs = Number(opt('--compute-ms') ?? 91);
const steps = Number(opt('--steps') ?? 6);
const buckets = Number(opt('--buckets') ?? 4);
const withStar = !flag('--no-star'), withSteps = !flag('--no-steps');
const jsonOut = opt('--json');
const segmentBytes = 1 << 20;
const MiB = 1 << 20;
const FORWARD_SHARE = 1 / 3;
const queueMs = Number(opt('--queue-ms') ?? 5);

const skipped = unavailableReason();
if (skipped) {
  console.log(`bench:cluster: skipped: ${skipped}`);
  process.exit(0);
}
const stale = staleNamespaces();
if (stale.length) process.stderr.write(`note: namespaces left by an earlier killed run: ${stale.join(' ')} (ip netns del NAME)\n`);

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const f = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const log = (s: string) => process.stderr.write(`${s}\n`);
const shapeName = (s: LinkShape) => `${s.rateBps / 1e9} Gbit/s${s.delayMs ? ` + ${s.delayMs} ms` : ''}`;

const haveNetem = netemAvailable();
const shapes: LinkShape[] = [];
for (const g of rates) {
  shapes.push({ rateBps: g * 1e9, delayMs: 0, queueMs });
  if (haveNetem) for (const d of delays.filter((x) => x > 0)) shapes.push({ rateBps: g * 1e9, delayMs: d, queueMs });
}
const notes: string[] = [];
if (!haveNetem && delays.some((x) => x > 0)) notes.push(`delay points (${delays.join(', ')} ms) skipped: sch_netem not available in this kernel; rate-only points run (no delay is faked)`);
for (const n of notes) log(`note: ${n}`);

const cfg = resolveConfig();
const params = parameterCount(cfg.model);
const secret = randomBytes(32).toString('hex');
const maxN = Math.max(...ranks, 1);
log(`bench:cluster: ranks ${ranks.join(',')}, sizes ${sizesMiB.join(',')} MiB, links ${shapes.map(shapeName).join('; ')}, ${reps} reps; step: ${params} params (default model), compute ${computeMs} ms; ${cpus().length} cores`);

interface Point { shape: string; rateBps: number; delayMs: number; N: number; MiB: number; boundMs: number; ringMs: number[]; starMs: number[]; tcpRingMs: number[] }
interface StepRow { shape: string; rateBps: number; N: number; variant: StepVariant; stepMs: number; stepsMs: number[]; updateMs: number; updateNsPerParam: number }
const points: Point[] = [];
const linkCheck = new Map<string, number[]>();
const stepRows: StepRow[] = [];

const net = NetCluster.create(maxN);
const t0 = performance.now();

/** Start N ranks in namespaces 0..N−1, open ring + star + TCP ring on their addresses, connect. */
async function startGroup(N: number): Promise<RankProc[]> {
  const procs = Array.from({ length: N }, (_, i) => RankProc.start(net, i, secret));
  try {
    const opened = await Promise.all(procs.map((p, rank) => p.request({ cmd: 'open', rank, worldSize: N, host: net.addresses[rank]!, segmentBytes, timeoutMs: 120_000 }, 60_000)));
    const tcp = await Promise.all(procs.map((p, rank) => p.request({ cmd: 'tcp-listen', host: net.addresses[rank]! }, 30_000)));
    await Promise.all(procs.map((p, rank) => p.request({
      cmd: 'connect', ringNext: { host: net.addresses[(rank + 1) % N]!, port: opened[(rank + 1) % N]!.port! }, starRoot: { host: net.addresses[0]!, port: opened[0]!.starPort! },
    }, 60_000)));
    await Promise.all(procs.map((p, rank) => p.request({ cmd: 'tcp-connect', host: net.addresses[(rank + 1) % N]!, port: tcp[(rank + 1) % N]!.port! }, 30_000)));
    return procs;
  } catch (e) {
    for (const p of procs) p.kill();
    throw e;
  }
}

/** Time budget for one operation moving `bytes` per rank at `rateBps`: generous, but bounded. */
const budgetMs = (bytes: number, N: number, rateBps: number) => 60_000 + (20 * N * bytes * 8 * 1000) / rateBps;

async function allReduce(procs: RankProc[], kind: 'ring' | 'star', bytes: number, n: number, rateBps: number): Promise<number[]> {
  const res = await Promise.all(procs.map((p) => p.request({ cmd: 'reduce', kind, length: bytes / 4, reps: n }, budgetMs(bytes, procs.length, rateBps) * n)));
  return res[0]!.times!.map((_, i) => Math.max(...res.map((r) => r.times![i]!))); // the slowest rank's time
}

async function tcpRing(procs: RankProc[], bytes: number, rateBps: number): Promise<number> {
  const N = procs.length;
  const per = Math.round(((2 * (N - 1)) / N) * bytes);
  const res = await Promise.all(procs.map((p) => p.request({ cmd: 'tcp-run', send: per, expect: per }, budgetMs(bytes, N, rateBps))));
  return Math.max(...res.map((r) => r.ms!));
}

/** One TCP stream rank 0 → rank 1 (through two shaped veth ends): the rate the links really give, MB/s. */
async function streamMBps(procs: RankProc[], rateBps: number): Promise<number> {
  const bytes = Math.min(64 * MiB, Math.round(rateBps / 8)); // ~1 s of traffic
  const [a, b] = await Promise.all([
    procs[0]!.request({ cmd: 'tcp-run', send: bytes, expect: 0 }, budgetMs(bytes, 2, rateBps)),
    procs[1]!.request({ cmd: 'tcp-run', send: 0, expect: bytes }, budgetMs(bytes, 2, rateBps)),
  ]);
  return bytes / 1e6 / (Math.max(a.ms!, b.ms!) / 1e3);
}

async function runSteps(procs: RankProc[], variant: StepVariant): Promise<{ stepsMs: number[]; updateMs: number; updateNsPerParam: number }> {
  const plan: StepPlan = { variant, params, computeMs, forwardShare: FORWARD_SHARE, buckets, steps, warmup: 2 };
  const res = await Promise.all(procs.map((p) => p.request({ cmd: 'step', plan }, 120_000 + 20 * (steps + 2) * computeMs)));
  const stepsMs = res[0]!.stepMs!.map((_, i) => Math.max(...res.map((r) => r.stepMs![i]!)));
  return { stepsMs, updateMs: median(res.map((r) => r.updateMs!)), updateNsPerParam: median(res.map((r) => r.updateNsPerParam!)) };
}

try {
  // N = 1: compute + the full update, no network (the reference of scaling efficiency)
  const baseline: Partial<Record<StepVariant, StepRow>> = {};
  if (withSteps) {
    const one = await startGroup(1);
    try {
      for (const v of STEP_VARIANTS) {
        const r = await runSteps(one, v);
        baseline[v] = { shape: '-', rateBps: 0, N: 1, variant: v, stepMs: mean(r.stepsMs), stepsMs: r.stepsMs, updateMs: r.updateMs, updateNsPerParam: r.updateNsPerParam };
        stepRows.push(baseline[v]!);
      }
    } finally { await Promise.all(one.map((p) => p.stop())); }
    log(`  N=1 step: ${STEP_VARIANTS.map((v) => `${v} ${f(baseline[v]!.stepMs, 1)} ms`).join(', ')}; AdamW ${f(baseline.allreduce!.updateNsPerParam, 2)} ns/param`);
  }
  for (const N of ranks) {
    const procs = await startGroup(N);
    try {
      for (const s of shapes) {
        net.shape(s);
        const name = shapeName(s);
        const check = [await streamMBps(procs, s.rateBps), await streamMBps(procs, s.rateBps)];
        linkCheck.set(name, [...(linkCheck.get(name) ?? []), ...check]);
        log(`  N=${N} ${name}: one TCP stream ${check.map((x) => f(x)).join(', ')} MB/s (configured ${f(s.rateBps / 8e6)})`);
        for (const size of sizesMiB) {
          const bytes = size * MiB;
          await allReduce(procs, 'ring', bytes, 1, s.rateBps); // warm-up
          if (withStar) await allReduce(procs, 'star', bytes, 1, s.rateBps);
          await tcpRing(procs, bytes, s.rateBps);
          const p: Point = { shape: name, rateBps: s.rateBps, delayMs: s.delayMs, N, MiB: size, boundMs: ringBoundSeconds(N, bytes, s.rateBps / 8) * 1e3, ringMs: [], starMs: [], tcpRingMs: [] };
          for (let i = 0; i < reps; i++) { // alternate, so all three see the same machine
            p.ringMs.push(...(await allReduce(procs, 'ring', bytes, 1, s.rateBps)));
            if (withStar) p.starMs.push(...(await allReduce(procs, 'star', bytes, 1, s.rateBps)));
            p.tcpRingMs.push(await tcpRing(procs, bytes, s.rateBps));
          }
          points.push(p);
          log(`  N=${N} ${name} ${size} MiB: bound ${f(p.boundMs, 1)} | ring ${p.ringMs.map((x) => f(x)).join(' ')} | star ${p.starMs.map((x) => f(x)).join(' ')} | raw TCP ring ${p.tcpRingMs.map((x) => f(x)).join(' ')} ms`);
        }
        if (withSteps && s.delayMs === 0) {
          for (const v of STEP_VARIANTS) {
            const r = await runSteps(procs, v);
            stepRows.push({ shape: name, rateBps: s.rateBps, N, variant: v, stepMs: mean(r.stepsMs), stepsMs: r.stepsMs, updateMs: r.updateMs, updateNsPerParam: r.updateNsPerParam });
          }
          log(`  N=${N} ${name} step: ${STEP_VARIANTS.map((v) => `${v} ${f(stepRows.find((x) => x.N === N && x.shape === name && x.variant === v)!.stepMs, 1)}`).join(', ')} ms`);
        }
      }
    } finally {
      await Promise.all(procs.map((p) => p.stop()));
    }
  }
} finally {
  net.destroy();
}

// ---- report -------------------------------------------------------------------------------------
const out: string[] = [];
const line = (s = '') => out.push(s);
const linkMBps = (name: string) => median(linkCheck.get(name) ?? [NaN]);
// TCP over Ethernet at MTU 1500 carries 1448 payload bytes per 1514-byte frame tbf counts
const TCP_GOODPUT = 1448 / 1514;

line('## Links (one TCP stream rank 0 → rank 1, through both shaped veth ends)');
line('| link | configured MB/s | TCP payload ceiling MB/s (1448/1514) | measured MB/s (median) | measured / configured |');
line('|---|---|---|---|---|');
for (const s of shapes) { const n = shapeName(s); line(`| ${n} | ${f(s.rateBps / 8e6)} | ${f((s.rateBps / 8e6) * TCP_GOODPUT)} | ${f(linkMBps(n))} | ${f(linkMBps(n) / (s.rateBps / 8e6), 3)} |`); }
line();
line('## All-reduce vs the bandwidth-optimal bound 2(N−1)/N·S/B (B = configured rate; "vs TCP" uses the measured stream rate as B)');
line('| link | N | MiB | bound ms | ring ms | ring / bound | ring / bound (vs TCP) | raw TCP ring ms | raw TCP ring / bound | star ms | star / bound |');
line('|---|---|---|---|---|---|---|---|---|---|---|');
for (const p of points) {
  const ring = median(p.ringMs), star = p.starMs.length ? median(p.starMs) : NaN, raw = median(p.tcpRingMs);
  const tcpBound = ringBoundSeconds(p.N, p.MiB * MiB, linkMBps(p.shape) * 1e6) * 1e3;
  line(`| ${p.shape} | ${p.N} | ${p.MiB} | ${f(p.boundMs, 1)} | ${f(ring, 1)} | ${f(ring / p.boundMs, 3)} | ${f(ring / tcpBound, 3)} | ${f(raw, 1)} | ${f(raw / p.boundMs, 3)} | ${f(star, 1)} | ${f(star / p.boundMs, 2)} |`);
}
line();
line('## α–β fit of the ring: t(N, S) = 2(N−1)·α + 2(N−1)/N·S·β (+ γ·S), least squares on relative error, per link');
line('| link | model | α ms | β ns/B | 1/β MB/s | 1/β ÷ configured | γ ns/B | rms rel. residual | residuals (%, in table order) |');
line('|---|---|---|---|---|---|---|---|---|');
const fits = new Map<string, { ab: AlphaBetaFit; abg: AlphaBetaFit }>();
for (const s of shapes) {
  const name = shapeName(s);
  const samples: Sample[] = points.filter((p) => p.shape === name).map((p) => ({ N: p.N, bytes: p.MiB * MiB, seconds: median(p.ringMs) / 1e3 }));
  if (samples.length < 3) continue;
  const ab = fitAlphaBeta(samples), abg = fitAlphaBeta(samples, { gamma: true });
  fits.set(name, { ab, abg });
  for (const [label, m] of [['α, β', ab], ['α, β, γ', abg]] as const) {
    line(`| ${name} | ${label} | ${f(m.alpha * 1e3, 3)} | ${f(m.beta * 1e9, 3)} | ${f(1 / m.beta / 1e6)} | ${f(1 / m.beta / (s.rateBps / 8), 3)} | ${f(m.gamma * 1e9, 3)} | ${f(m.rmsRel, 3)} | ${m.relResiduals.map((r) => f(100 * r)).join(' ')} |`);
  }
}
line();

let basis: PredictionBasis | undefined;
let prediction: PredictionRow[] = [];
const base = (v: StepVariant) => stepRows.find((r) => r.N === 1 && r.variant === v);
if (withSteps && base('allreduce')) {
  const nsPerParam = base('allreduce')!.updateNsPerParam;
  line(`## End-to-end step: default model (${params} params, ${f((params * 4) / 1e6, 2)} MB f32 gradients), compute ${computeMs} ms/step (fixed, per worker), AdamW ${f(nsPerParam, 2)} ns/param here`);
  line('scaling efficiency = T_step(1) / T_step(N) at fixed per-worker batch; "model" = the α–β fit of that link replayed through the same schedule');
  line('| link | N | variant | step ms | efficiency | model step ms | model efficiency |');
  line('|---|---|---|---|---|---|---|');
  for (const r of stepRows) {
    const b = base(r.variant)!;
    const fit = fits.get(r.shape)?.abg;
    const sm: StepModel | undefined = fit && { net: fit, computeSeconds: computeMs / 1e3, forwardShare: FORWARD_SHARE, params, bytesPerParam: 4, updateSecondsPerParam: nsPerParam * 1e-9, buckets };
    const model = sm ? stepSeconds(sm, r.variant, r.N) * 1e3 : NaN;
    const model1 = sm ? stepSeconds(sm, r.variant, 1) * 1e3 : NaN;
    line(`| ${r.shape} | ${r.N} | ${r.variant} | ${f(r.stepMs, 1)} | ${f(b.stepMs / r.stepMs, 3)} | ${f(model, 1)} | ${f(model1 / model, 3)} |`);
  }
  line();
  // the prediction rests on the link-bound fit: the lowest rate without delay
  const anchor = shapes.filter((s) => s.delayMs === 0).sort((a, b) => a.rateBps - b.rateBps)[0];
  const fit = anchor && fits.get(shapeName(anchor))?.abg;
  if (fit && anchor) {
    basis = {
      alpha: fit.alpha, gamma: fit.gamma, linkOverhead: fit.beta * (anchor.rateBps / 8), computeSeconds: 1.104, forwardShare: FORWARD_SHARE,
      params: 110e6, bytesPerParam: 4, updateSecondsPerParam: nsPerParam * 1e-9, buckets,
    };
    prediction = predict(basis);
    line(`## Prediction: BERT-base (110M params, f32 gradients 440 MB), compute 1.104 s/step (H200, STACK-NOTES), α = ${f(basis.alpha * 1e3, 3)} ms, γ = ${f(basis.gamma * 1e9, 3)} ns/B, β = ${f(basis.linkOverhead, 3)}/B (fit at ${shapeName(anchor)}), AdamW ${f(nsPerParam, 2)} ns/param, ${buckets} buckets`);
    line('| Gbit/s | N | all-reduce s (flat) | all-reduce s (2-D) | eff. all-reduce | eff. all-reduce+overlap | eff. sharded | eff. sharded+overlap | eff. sharded+overlap, 2-D ring |');
    line('|---|---|---|---|---|---|---|---|---|');
    for (const r of prediction) {
      const e = r.efficiency;
      line(`| ${r.gbit} | ${r.N} | ${f(r.allReduce, 3)} | ${f(r.allReduce2d, 3)} | ${f(e.allreduce, 3)} | ${f(e['allreduce-overlap'], 3)} | ${f(e.sharded, 3)} | ${f(e['sharded-overlap'], 3)} | ${f(e['sharded-overlap-2d'], 3)} |`);
    }
    line();
  }
}
for (const n of notes) line(`note: ${n}`);
line(`machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}; segment ${segmentBytes} B; ${reps} reps (median; collective time = slowest rank); total ${f((performance.now() - t0) / 1000, 1)} s`);
console.log(out.join('\n'));
if (jsonOut) {
  writeFileSync(jsonOut, JSON.stringify({
    config: { ranks, sizesMiB, shapes, reps, computeMs, steps, buckets, params, segmentBytes, forwardShare: FORWARD_SHARE, netem: haveNetem, cores: cpus().length, node: process.version },
    notes, linkCheck: Object.fromEntries(linkCheck), points, fits: Object.fromEntries(fits), steps: stepRows, basis, prediction,
  }, null, 2));
}
