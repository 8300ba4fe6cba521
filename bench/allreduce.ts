/**
 * All-reduce benchmark: ring vs star vs raw TCP, real worker processes on 127.0.0.1.
 *
 *   node --import tsx bench/allreduce.ts            # N = 2,3,4 × 1,16,64 MiB, 5 reps (≈ 2–4 min on 2 cores)
 *   node --import tsx bench/allreduce.ts --quick    # N = 2,4 × 1,16 MiB, 3 reps
 *   node --import tsx bench/allreduce.ts --ranks 2,3,4,8 --sizes 16,64 --wire bf16   # + the bf16 ring
 *   node --import tsx bench/allreduce.ts --help     # the options
 *   options: --ranks 2,3,4  --sizes 1,16,64 (MiB)  --reps 5  --segment 1048576 (bytes)  --wire bf16  --no-star  --json out.json
 *
 * For each N the ring, the star and the raw-TCP ring run side by side (all processes up at once)
 * and their repetitions alternate, so all three see the same machine; the raw TCP pair runs
 * between them too. The headline is the ratio ring time / raw-TCP-ring time per (N, size), printed
 * first. `--wire bf16` also times the same ring with bf16 reduce-scatter segments (its own
 * repetitions, in the same alternation). The ring also runs a second time with its per-frame MAC
 * off (`frameMac: false`, "ring, no MAC"), in the same alternation: the MAC's cost, side by side. Per repetition all ranks first meet in a 1-element all-reduce (a barrier),
 * then time the real one; the collective's time is the slowest rank's; tables show medians.
 * busbw = 2(N−1)/N × bytes / time (the per-link bandwidth a bandwidth-optimal algorithm needs).
 * Raw TCP: one process streams 64 MiB to another over a plain `net` socket, same machine, same run.
 * Raw TCP ring: N processes each stream 2(N−1)/N × bytes to the next over plain sockets at once —
 * the ring's traffic with no WebSocket framing, no frames and no adds: the transport's ceiling.
 * Breakdown (median over ranks and reps, % of the rank's wall time): the ring's own code (add,
 * encode, decode, send), other user-space CPU (ws, Node streams, GC), kernel CPU (socket copies)
 * and idle (waiting for peers or for a CPU: on 2 shared cores N processes compete).
 */
import { writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { spawnWorker, startGroup, stopGroup, type WorkerProc } from '../tests/kit/cluster.ts';
import type { CollectiveStats } from '../collective/index.ts';
import { median } from './lib/median.ts';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(`--${name}`);
const opt = (name: string, def: string) => { const i = args.indexOf(`--${name}`); return i >= 0 && args[i + 1] ? args[i + 1]! : def; };
if (flag('help') || flag('h')) {
  console.log([
    'usage: node --import tsx bench/allreduce.ts [options]   (npm run bench:allreduce -- [options])',
    '  ring all-reduce vs the star baseline vs raw TCP, real worker processes on 127.0.0.1',
    '  --quick           N = 2,4 × 1,16 MiB, 3 reps (default: N = 2,3,4 × 1,16,64 MiB, 5 reps)',
    '  --ranks 2,3,4     world sizes',
    '  --sizes 1,16,64   buffer sizes, MiB',
    '  --reps 5          timed repetitions per (N, size), after one warm-up',
    '  --segment 1048576 segment size, bytes',
    '  --wire bf16       also time the ring with a bf16 reduce-scatter (column "bf16 ring")',
    '  --no-star         leave the star baseline out (faster)',
    '  --json out.json   also write every number as JSON',
  ].join('\n'));
  process.exit(0);
}
const quick = flag('quick');
const ranks = opt('ranks', quick ? '2,4' : '2,3,4').split(',').map(Number);
const sizesMiB = opt('sizes', quick ? '1,16' : '1,16,64').split(',').map(Number);
const reps = Number(opt('reps', quick ? '3' : '5'));
const segmentBytes = Number(opt('segment', String(1 << 20)));
const jsonOut = opt('json', '');
const bf16 = opt('wire', 'f32') === 'bf16';
const withStar = !flag('no-star');
const secret = randomBytes(32).toString('hex');
const MiB = 1 << 20;

const fmt = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');

/** A pair of processes streaming over a plain `net` socket; `run()` times one 64 MiB transfer. */
async function rawTcpPair(): Promise<{ run: (bytes: number) => Promise<number>; stop: () => void }> {
  const a = spawnWorker('tcp receiver');
  const b = spawnWorker('tcp sender');
  const { port } = await a.request({ cmd: 'tcp-listen' }, 'tcp-port', 30_000);
  return {
    // a fresh connection per transfer is fine: 64 MiB dwarfs the connect
    run: async (bytes) => {
      const { times } = await b.request({ cmd: 'tcp-send', port, bytes, reps: 2 }, 'tcp-done', 120_000);
      return bytes / 1e6 / (times[1]! / 1e3); // MB/s of the second (warm) transfer
    },
    stop: () => { a.kill(); b.kill(); },
  };
}

/** The ring's traffic over plain sockets: each rank streams 2(N−1)/N × bytes to its successor. */
async function rawTcpRing(N: number): Promise<{ run: (size: number) => Promise<number>; stop: () => void }> {
  const procs = Array.from({ length: N }, (_, r) => spawnWorker(`tcp ring ${r}`));
  const ports = await Promise.all(procs.map((p) => p.request({ cmd: 'tcpring-listen' }, 'tcpring-ready', 30_000)));
  await Promise.all(procs.map((p, r) => p.request({ cmd: 'tcpring-connect', port: ports[(r + 1) % N]!.port! }, 'tcpring-ready', 30_000)));
  return {
    run: async (size) => {
      const bytes = Math.round(((2 * (N - 1)) / N) * size * MiB);
      const res = await Promise.all(procs.map((p) => p.request({ cmd: 'tcpring-run', bytes }, 'tcpring-done', 120_000)));
      return Math.max(...res.map((x) => x.ms));
    },
    stop: () => { for (const p of procs) p.kill(); },
  };
}

interface Row {
  kind: 'ring' | 'ring-nomac' | 'star' | 'ring-bf16'; N: number; MiB: number; ms: number; msAll: number[];
  busbw: number; algbw: number;
  breakdown: { waitMs: number; addMs: number; encodeMs: number; decodeMs: number; sendMs: number; totalMs: number; cpuUserMs: number; cpuSystemMs: number };
}

/** One timed all-reduce on every rank (after a 1-element barrier); returns the slowest rank's time and all stats. */
async function collective(procs: WorkerProc[], size: number, wire?: 'bf16'): Promise<{ ms: number; stats: CollectiveStats[] }> {
  const length = (size * MiB) / 4;
  const res = await Promise.all(procs.map((p) => p.request({ cmd: 'reduce', length, op: 'sum', reps: 1, barrier: true, input: 'constant', ...(wire ? { wire } : {}) }, 'reduced', 180_000)));
  return { ms: Math.max(...res.map((r) => r.times[0]!)), stats: res.map((r) => r.stats[0]!) };
}

function row(kind: Row['kind'], N: number, size: number, times: number[], stats: CollectiveStats[]): Row {
  const ms = median(times);
  const bytes = size * MiB;
  const med = (f: (s: CollectiveStats) => number) => median(stats.map(f).filter(Number.isFinite));
  return {
    kind, N, MiB: size, ms, msAll: times,
    algbw: bytes / 1e6 / (ms / 1e3), busbw: ((2 * (N - 1)) / N) * (bytes / 1e6 / (ms / 1e3)),
    breakdown: {
      totalMs: med((s) => s.totalMs), waitMs: med((s) => s.waitMs), addMs: med((s) => s.addMs),
      encodeMs: med((s) => s.encodeMs), decodeMs: med((s) => s.decodeMs), sendMs: med((s) => s.sendMs),
      cpuUserMs: med((s) => s.cpuUserMs), cpuSystemMs: med((s) => s.cpuSystemMs),
    },
  };
}

const t0 = performance.now();
process.stderr.write(`all-reduce benchmark: ranks ${ranks.join(',')}, sizes ${sizesMiB.join(',')} MiB, ${reps} reps, segment ${segmentBytes} B${bf16 ? ', + bf16 ring' : ''}${withStar ? '' : ', no star'}\n`);
const rows: Row[] = [];
const tcpRingMs = new Map<string, number>();
const tcpRates: number[] = [];
const pair = await rawTcpPair();
try {
  for (const N of ranks) {
    // all contenders up at once; repetitions alternate between them so they see the same machine
    const ring = await startGroup({ kind: 'ring', worldSize: N, secret, segmentBytes, timeoutMs: 30_000 });
    const ringNoMac = await startGroup({ kind: 'ring', worldSize: N, secret, segmentBytes, timeoutMs: 30_000, frameMac: false });
    const star = withStar ? await startGroup({ kind: 'star', worldSize: N, secret, segmentBytes, timeoutMs: 30_000 }) : [];
    const tcpRing = await rawTcpRing(N);
    try {
      for (const size of sizesMiB) {
        await collective(ring, size); // warm-up
        await collective(ringNoMac, size);
        if (bf16) await collective(ring, size, 'bf16');
        if (withStar) await collective(star, size);
        await tcpRing.run(size);
        const rt: number[] = [], nt: number[] = [], bt: number[] = [], st: number[] = [], tt: number[] = [];
        const rs: CollectiveStats[] = [], ns: CollectiveStats[] = [], bs: CollectiveStats[] = [], ss: CollectiveStats[] = [];
        for (let i = 0; i < reps; i++) {
          tt.push(await tcpRing.run(size));
          const r = await collective(ring, size); rt.push(r.ms); rs.push(...r.stats);
          const n = await collective(ringNoMac, size); nt.push(n.ms); ns.push(...n.stats);
          if (bf16) { const b = await collective(ring, size, 'bf16'); bt.push(b.ms); bs.push(...b.stats); }
          if (withStar) { const s = await collective(star, size); st.push(s.ms); ss.push(...s.stats); }
          if (size === sizesMiB[sizesMiB.length - 1]) tcpRates.push(await pair.run(64 * MiB));
        }
        rows.push(row('ring', N, size, rt, rs));
        rows.push(row('ring-nomac', N, size, nt, ns));
        if (bf16) rows.push(row('ring-bf16', N, size, bt, bs));
        if (withStar) rows.push(row('star', N, size, st, ss));
        tcpRingMs.set(`${N}/${size}`, median(tt));
        const list = (xs: number[]) => xs.map((x) => fmt(x)).join(' ');
        process.stderr.write(`  N=${N} ${size} MiB: ring ${list(rt)} | ring, no MAC ${list(nt)}${bf16 ? ` | bf16 ring ${list(bt)}` : ''}${withStar ? ` | star ${list(st)}` : ''} | raw TCP ring ${list(tt)} ms\n`);
      }
    } finally {
      tcpRing.stop();
      await stopGroup(ring);
      await stopGroup(ringNoMac);
      if (withStar) await stopGroup(star);
    }
  }
} finally {
  pair.stop();
}
process.stderr.write(`  raw TCP: ${tcpRates.map((x) => fmt(x)).join(' ')} MB/s\n`);
const tcp = median(tcpRates);

const lines: string[] = [];
const find = (kind: Row['kind'], N: number, size: number) => rows.find((x) => x.kind === kind && x.N === N && x.MiB === size);
lines.push('ring time / raw-TCP-ring time (the target is ≤ 1.3), medians:');
lines.push('');
lines.push(`| N | size MiB | raw TCP ring ms | ring ms | ring / raw TCP ring | ring, no MAC ms | MAC cost (ring / no MAC) |${bf16 ? ' bf16 ring ms | bf16 ring / raw TCP ring | bf16 / f32 ring |' : ''}`);
lines.push(`|---|---|---|---|---|---|---|${bf16 ? '---|---|---|' : ''}`);
for (const N of ranks) {
  for (const size of sizesMiB) {
    const r = find('ring', N, size)!;
    const nm = find('ring-nomac', N, size)!;
    const b = find('ring-bf16', N, size);
    const raw = tcpRingMs.get(`${N}/${size}`) ?? NaN;
    lines.push(`| ${N} | ${size} | ${fmt(raw, 1)} | ${fmt(r.ms, 1)} | **${fmt(r.ms / raw, 2)}** | ${fmt(nm.ms, 1)} | ${fmt(r.ms / nm.ms, 2)} |${b ? ` ${fmt(b.ms, 1)} | ${fmt(b.ms / raw, 2)} | ${fmt(b.ms / r.ms, 2)} |` : ''}`);
  }
}
lines.push('');
lines.push(`raw TCP (2 processes, 64 MiB over net.Socket, measured between the repetitions): median ${fmt(tcp)} MB/s, range ${fmt(Math.min(...tcpRates))}–${fmt(Math.max(...tcpRates))}`);
lines.push('');
lines.push('| N | size MiB | contender | ms | busbw MB/s | / star time | busbw / raw TCP | N × busbw / raw TCP | / raw TCP ring time | rank time: add / encode / decode / send / other JS / kernel / idle (%) |');
lines.push('|---|---|---|---|---|---|---|---|---|---|');
for (const N of ranks) {
  for (const size of sizesMiB) {
    const s = find('star', N, size);
    const raw = tcpRingMs.get(`${N}/${size}`) ?? NaN;
    for (const kind of ['ring', 'ring-nomac', 'ring-bf16', 'star'] as const) {
      const r = find(kind, N, size);
      if (!r) continue;
      const b = r.breakdown;
      const pct = (x: number) => fmt((100 * Math.max(0, x)) / b.totalMs);
      const own = b.addMs + b.encodeMs + b.decodeMs + b.sendMs;
      lines.push(`| ${N} | ${size} | ${kind} | ${fmt(r.ms, 1)} | ${fmt(r.busbw)} | ${s ? fmt(r.ms / s.ms, 2) : '-'} | ${fmt(r.busbw / tcp, 2)} | ${fmt((N * r.busbw) / tcp, 2)} | ${fmt(r.ms / raw, 2)} | ${pct(b.addMs)} / ${pct(b.encodeMs)} / ${pct(b.decodeMs)} / ${pct(b.sendMs)} / ${pct(b.cpuUserMs - own)} / ${pct(b.cpuSystemMs)} / ${pct(b.totalMs - b.cpuUserMs - b.cpuSystemMs)} |`);
    }
  }
}
lines.push('');
lines.push(`segment ${segmentBytes} B, ${reps} reps (median, collective time = slowest rank), machine: ${(await import('node:os')).cpus().length} cores, node ${process.version}; total ${fmt((performance.now() - t0) / 1000, 1)} s`);
console.log(lines.join('\n'));
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ tcp: tcpRates, tcpRingMs: Object.fromEntries(tcpRingMs), rows, segmentBytes, reps }, null, 2));
