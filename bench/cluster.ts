/**
 * A cluster on one machine with real link limits: every rank in its own network namespace, its
 * NIC a veth pair into a bridge, rate-limited with tc (bench/lib/netns.ts). Root only; skipped
 * with one line otherwise.
 *
 *   npm run bench:cluster                    # N = 2,3,4,8 × 1,16,64 MiB × 1 and 10 Gbit/s, steps (7–13 min on 2 cores)
 *   npm run bench:cluster -- --quick         # N = 2,4 × 1,16 MiB × 1 Gbit/s, steps (≈ 1 min)
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
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { randomBytes } from 'node:crypto';
import { benchArgs } from './lib/args.ts';
import { NetCluster, netemAvailable, staleNamespaces, unavailableReason, type LinkShape } from './lib/netns.ts';
import { RankProc } from './lib/rank-proc.ts';
import { ringBoundSeconds, type StepVariant } from './lib/alpha-beta.ts';
import { STEP_VARIANTS, type StepPlan } from './lib/step-sim.ts';
import { analyse, overridesFrom, report, shapeName, type ClusterResult, type Point, type StepRow } from './lib/cluster-report.ts';
import { median } from './lib/median.ts';
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
    '  --segment 1048576   ring segment size, bytes',
    '  --queue-ms 5        tbf queue per veth end, as ms at the rate (a NIC / switch-port buffer)',
    '  --no-star  --no-steps   leave those parts out',
    '  --json out.json     every number as JSON',
    '  --report out.json   print the report of a saved run again (no root needed); with it, the prediction\'s',
    '                      --alpha-ms A --ceiling-mbps C --link-overhead L --basis-source TEXT replace the measured ones',
  ].join('\n'));
  process.exit(0);
}

const saved = opt('--report');
if (saved) {
  const r = JSON.parse(readFileSync(saved, 'utf8')) as ClusterResult;
  console.log(report(analyse({ ...r, config: { ...r.config, cpu: r.config.cpu ?? '?', seconds: r.config.seconds ?? NaN } }, overridesFrom(opt))));
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
const segmentBytes = Number(opt('--segment') ?? 1 << 20);
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

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const f = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const log = (s: string) => process.stderr.write(`${s}\n`);

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

const points: Point[] = [];
const linkCheck = new Map<string, number[]>();
const stepRows: StepRow[] = [];

/** Expected failures (a command that fails, a rank that does not answer in time) end the bench with one line. */
function fail(e: unknown): never {
  console.error(`bench:cluster: ${(e as Error).message ?? String(e)}`);
  process.exit(1); // the 'exit' hook of NetCluster removes the namespaces
}
let net: NetCluster;
try { net = NetCluster.create(maxN); } catch (e) { fail(e); }
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

/** One timed all-reduce per rep on every rank: the slowest rank's time, and the ranks' CPU time as a share of it. */
async function allReduce(procs: RankProc[], kind: 'ring' | 'star', bytes: number, n: number, rateBps: number): Promise<{ ms: number[]; cpu: number[] }> {
  const res = await Promise.all(procs.map((p) => p.request({ cmd: 'reduce', kind, length: bytes / 4, reps: n }, budgetMs(bytes, procs.length, rateBps) * n)));
  const ms = res[0]!.times!.map((_, i) => Math.max(...res.map((r) => r.times![i]!)));
  return { ms, cpu: ms.map((t, i) => median(res.map((r) => r.cpuMs![i]!)) / t) };
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
  const plan: StepPlan = { variant, dims: cfg.model, computeMs, forwardShare: FORWARD_SHARE, buckets, steps, warmup: 2 };
  const res = await Promise.all(procs.map((p) => p.request({ cmd: 'step', plan }, 120_000 + 20 * (steps + 2) * computeMs)));
  const hashes = new Set(res.map((r) => r.paramsHash));
  if (hashes.size !== 1) throw new Error(`step ${variant}, N=${procs.length}: the ranks ended with different parameters (${[...hashes].join(', ')})`);
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
          const ringCpu: number[] = [];
          const p: Point = { shape: name, rateBps: s.rateBps, delayMs: s.delayMs, N, MiB: size, boundMs: ringBoundSeconds(N, bytes, s.rateBps / 8) * 1e3, ringMs: [], ringCpu, starMs: [], tcpRingMs: [] };
          for (let i = 0; i < reps; i++) { // alternate, so all three see the same machine
            const ring = await allReduce(procs, 'ring', bytes, 1, s.rateBps);
            p.ringMs.push(...ring.ms);
            ringCpu.push(...ring.cpu);
            if (withStar) p.starMs.push(...(await allReduce(procs, 'star', bytes, 1, s.rateBps)).ms);
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
} catch (e) {
  fail(e);
} finally {
  net.destroy();
}

const result: ClusterResult = analyse({
  config: {
    ranks, sizesMiB, shapes, reps, computeMs, steps, buckets, params, segmentBytes, forwardShare: FORWARD_SHARE, netem: haveNetem,
    cores: cpus().length, cpu: cpus()[0]?.model ?? '?', node: process.version, seconds: (performance.now() - t0) / 1000,
  },
  notes, linkCheck: Object.fromEntries(linkCheck), points, steps: stepRows,
});
console.log(report(result));
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(result, null, 2));
