/**
 * All-reduce benchmark: ring vs star vs raw TCP, real worker processes on 127.0.0.1.
 *
 *   node --import tsx bench/allreduce.ts            # N = 2,3,4 × 1,16,64 MiB, 5 reps (≈ 2–4 min on 2 cores)
 *   node --import tsx bench/allreduce.ts --quick    # N = 2,4 × 1,16 MiB, 3 reps
 *   options: --ranks 2,3,4  --sizes 1,16,64 (MiB)  --reps 5  --segment 1048576 (bytes)  --json out.json
 *
 * Per repetition all ranks first meet in a 1-element all-reduce (a barrier), then time the real
 * one; the collective's time is the slowest rank's; tables show medians over repetitions.
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
import { spawnWorker, startGroup, stopGroup, type WorkerProc } from './lib/cluster.ts';
import type { AllReduceStats } from '../worker/ring.ts';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(`--${name}`);
const opt = (name: string, def: string) => { const i = args.indexOf(`--${name}`); return i >= 0 && args[i + 1] ? args[i + 1]! : def; };
const quick = flag('quick');
const ranks = opt('ranks', quick ? '2,4' : '2,3,4').split(',').map(Number);
const sizesMiB = opt('sizes', quick ? '1,16' : '1,16,64').split(',').map(Number);
const reps = Number(opt('reps', quick ? '3' : '5'));
const segmentBytes = Number(opt('segment', String(1 << 20)));
const jsonOut = opt('json', '');
const secret = randomBytes(32).toString('hex');
const MiB = 1 << 20;

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };
const fmt = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');

async function rawTcp(bytes: number, n: number): Promise<number[]> {
  const a = spawnWorker('tcp receiver');
  const b = spawnWorker('tcp sender');
  try {
    const { port } = await a.request({ cmd: 'tcp-listen' }, 'tcp-port', 30_000);
    const { times } = await b.request({ cmd: 'tcp-send', port, bytes, reps: n + 1 }, 'tcp-done', 120_000);
    return times.slice(1).map((ms) => bytes / 1e6 / (ms / 1e3)); // MB/s, first transfer is warm-up
  } finally {
    a.kill(); b.kill();
  }
}

/** The ring's traffic pattern over plain sockets: each rank streams 2(N−1)/N × bytes to its successor. */
async function rawTcpRing(N: number, sizes: number[], n: number): Promise<Map<number, number>> {
  const procs = Array.from({ length: N }, (_, r) => spawnWorker(`tcp ring ${r}`));
  const out = new Map<number, number>();
  try {
    const ports = await Promise.all(procs.map((p) => p.request({ cmd: 'tcpring-listen' }, 'tcpring-ready', 30_000)));
    await Promise.all(procs.map((p, r) => p.request({ cmd: 'tcpring-connect', port: ports[(r + 1) % N]!.port! }, 'tcpring-ready', 30_000)));
    for (const size of sizes) {
      const bytes = Math.round(((2 * (N - 1)) / N) * size * MiB);
      const times: number[] = [];
      for (let i = 0; i < n + 1; i++) {
        const res = await Promise.all(procs.map((p) => p.request({ cmd: 'tcpring-run', bytes }, 'tcpring-done', 120_000)));
        if (i > 0) times.push(Math.max(...res.map((x) => x.ms)));
      }
      out.set(size, median(times));
      process.stderr.write(`  raw TCP ring N=${N} ${size} MiB: ${fmt(median(times), 1)} ms\n`);
    }
  } finally {
    for (const p of procs) p.kill();
  }
  return out;
}

interface Row {
  kind: 'ring' | 'star'; N: number; MiB: number; ms: number; msAll: number[];
  busbw: number; algbw: number;
  breakdown: { waitMs: number; addMs: number; encodeMs: number; decodeMs: number; sendMs: number; totalMs: number; cpuUserMs: number; cpuSystemMs: number };
}

async function measure(kind: 'ring' | 'star', N: number, sizes: number[]): Promise<Row[]> {
  const procs: WorkerProc[] = await startGroup({ kind, worldSize: N, secret, segmentBytes, timeoutMs: 30_000 });
  const rows: Row[] = [];
  try {
    for (const size of sizes) {
      const length = (size * MiB) / 4;
      const res = await Promise.all(procs.map((p) => p.request({ cmd: 'reduce', length, op: 'sum', reps, warmup: 1, barrier: true, input: 'constant' }, 'reduced', 180_000)));
      const perRep = res[0]!.times.map((_, i) => Math.max(...res.map((r) => r.times[i]!)));
      const ms = median(perRep);
      const bytes = size * MiB;
      const avg = (f: (s: AllReduceStats) => number) => median(res.flatMap((r) => r.stats.map(f)).filter(Number.isFinite));
      rows.push({
        kind, N, MiB: size, ms, msAll: perRep,
        algbw: bytes / 1e6 / (ms / 1e3), busbw: ((2 * (N - 1)) / N) * (bytes / 1e6 / (ms / 1e3)),
        breakdown: {
          totalMs: avg((s) => s.totalMs), waitMs: avg((s) => s.waitMs), addMs: avg((s) => s.addMs),
          encodeMs: avg((s) => s.encodeMs), decodeMs: avg((s) => s.decodeMs), sendMs: avg((s) => s.sendMs),
          cpuUserMs: avg((s) => s.cpuUserMs), cpuSystemMs: avg((s) => s.cpuSystemMs),
        },
      });
      process.stderr.write(`  ${kind} N=${N} ${size} MiB: ${fmt(ms, 1)} ms (reps ${perRep.map((x) => fmt(x)).join(' ')})\n`);
    }
  } finally {
    await stopGroup(procs);
  }
  return rows;
}

const t0 = performance.now();
process.stderr.write(`all-reduce benchmark: ranks ${ranks.join(',')}, sizes ${sizesMiB.join(',')} MiB, ${reps} reps, segment ${segmentBytes} B\n`);
const tcpBefore = await rawTcp(64 * MiB, 3);
process.stderr.write(`  raw TCP: ${tcpBefore.map((x) => fmt(x)).join(' ')} MB/s\n`);
const rows: Row[] = [];
const tcpRingMs = new Map<string, number>();
for (const N of ranks) {
  rows.push(...(await measure('ring', N, sizesMiB)));
  rows.push(...(await measure('star', N, sizesMiB)));
  for (const [size, ms] of await rawTcpRing(N, sizesMiB, reps)) tcpRingMs.set(`${N}/${size}`, ms);
}
const tcpAfter = await rawTcp(64 * MiB, 3);
process.stderr.write(`  raw TCP: ${tcpAfter.map((x) => fmt(x)).join(' ')} MB/s\n`);
const tcp = median([...tcpBefore, ...tcpAfter]);

const lines: string[] = [];
lines.push(`raw TCP (2 processes, 64 MiB over net.Socket): median ${fmt(tcp)} MB/s  [${[...tcpBefore, ...tcpAfter].map((x) => fmt(x)).join(', ')}]`);
lines.push('');
lines.push('| N | size MiB | ring ms | ring busbw MB/s | star ms | star busbw MB/s | ring/star time | ring busbw / raw TCP | N × ring busbw / raw TCP | raw TCP ring ms | ring / raw TCP ring time | ring rank time: add / encode / decode / send / other JS / kernel / idle (%) |');
lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const N of ranks) {
  for (const size of sizesMiB) {
    const r = rows.find((x) => x.kind === 'ring' && x.N === N && x.MiB === size)!;
    const s = rows.find((x) => x.kind === 'star' && x.N === N && x.MiB === size)!;
    const b = r.breakdown;
    const pct = (x: number) => fmt((100 * Math.max(0, x)) / b.totalMs);
    const ringCode = b.addMs + b.encodeMs + b.decodeMs + b.sendMs;
    const raw = tcpRingMs.get(`${N}/${size}`) ?? NaN;
    lines.push(`| ${N} | ${size} | ${fmt(r.ms, 1)} | ${fmt(r.busbw)} | ${fmt(s.ms, 1)} | ${fmt(s.busbw)} | ${fmt(r.ms / s.ms, 2)} | ${fmt(r.busbw / tcp, 2)} | ${fmt((N * r.busbw) / tcp, 2)} | ${fmt(raw, 1)} | ${fmt(r.ms / raw, 2)} | ${pct(b.addMs)} / ${pct(b.encodeMs)} / ${pct(b.decodeMs)} / ${pct(b.sendMs)} / ${pct(b.cpuUserMs - ringCode)} / ${pct(b.cpuSystemMs)} / ${pct(b.totalMs - b.cpuUserMs - b.cpuSystemMs)} |`);
  }
}
lines.push('');
lines.push(`segment ${segmentBytes} B, ${reps} reps (median, collective time = slowest rank), machine: ${(await import('node:os')).cpus().length} cores, node ${process.version}; total ${fmt((performance.now() - t0) / 1000, 1)} s`);
console.log(lines.join('\n'));
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ tcp: [...tcpBefore, ...tcpAfter], rows, segmentBytes, reps }, null, 2));
