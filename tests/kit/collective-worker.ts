/**
 * A child process that runs one rank of a ring (any collective) or star all-reduce (or one end of
 * a raw TCP throughput test), driven by its parent over IPC. Used by bench/allreduce.ts and the tests.
 * Start with child_process.fork(this file, { execArgv: ['--import', 'tsx'], serialization: 'advanced' })
 * and TTC_SECRET in the environment (tests/kit/cluster.ts does). Log lines go to the parent as
 * `log` events; TTC_WORKER_STDERR=1 also prints them.
 */
import net from 'node:net';
import { loadSecret } from '../../wire/auth.ts';
import { CollectiveError, Ring, type CollectiveKind, type CollectiveStats, type ReduceOp, type RingTls, type WireFormat } from '../../collective/index.ts';
import { Star } from '../../bench/star.ts';
import { makeInput } from './inputs.ts';

export type WorkerCommand =
  | { cmd: 'open'; kind: 'ring' | 'star'; rank: number; worldSize: number; segmentBytes?: number; timeoutMs?: number; joinTimeoutMs?: number; connectTimeoutMs?: number; handshakeTimeoutMs?: number; tls?: RingTls; ringId?: string; frameMac?: boolean }
  | { cmd: 'connect'; host: string; port: number }
  /** firstRep: also send `first-rep` when the first call is done (a test's sign that the ranks are mid-command) */
  | { cmd: 'reduce'; length: number; op: 'sum' | 'mean'; reps: number; warmup?: number; barrier?: boolean; input: 'random' | 'constant'; seed?: number; returnResult?: boolean; wire?: WireFormat; firstRep?: boolean }
  /** a sequence of collectives on the ring; the input of call i is makeInput(rank, length, seed) */
  | { cmd: 'sequence'; calls: SequenceCall[] }
  | { cmd: 'close' }
  /** busy-wait synchronously (a blocking training step): no event loop, no heartbeats */
  | { cmd: 'block'; ms: number }
  | { cmd: 'tcp-listen' }
  | { cmd: 'tcp-send'; port: number; bytes: number; reps: number; writeBytes?: number }
  /** the ring's traffic pattern over plain sockets (no ws, no frames, no adds): the transport ceiling */
  | { cmd: 'tcpring-listen' }
  | { cmd: 'tcpring-connect'; port: number }
  | { cmd: 'tcpring-run'; bytes: number };

export interface SequenceCall {
  kind: CollectiveKind;
  length: number;
  op?: ReduceOp;
  wire?: WireFormat;
  root?: number;
  seed: number;
  /** wait this long (event loop free) before issuing the call: staggers the ranks */
  delayMs?: number;
}

export type WorkerEvent =
  | { ev: 'opened'; port: number }
  | { ev: 'connected' }
  | { ev: 'first-rep' }
  | { ev: 'reduced'; times: number[]; cpuMs: number[]; stats: CollectiveStats[]; result?: Float32Array }
  /** per call: the buffer afterwards (empty for a barrier) and the stats (none for a barrier) */
  | { ev: 'sequenced'; results: Float32Array[]; stats: (CollectiveStats | null)[] }
  | { ev: 'error'; message: string; name: string; failedRank?: number; failedAddress?: string }
  | { ev: 'log'; line: string }
  | { ev: 'closed' }
  | { ev: 'unblocked' }
  | { ev: 'tcp-port'; port: number }
  | { ev: 'tcp-done'; times: number[] }
  | { ev: 'tcpring-ready'; port?: number }
  | { ev: 'tcpring-done'; ms: number };

const send = (e: WorkerEvent) => process.send?.(e);
const log = (line: string) => { send({ ev: 'log', line }); if (process.env.TTC_WORKER_STDERR === '1') process.stderr.write(line + '\n'); };
let node: Ring | Star | undefined;
let rank = 0;
const tcpRing: { out?: net.Socket; inbound?: net.Socket; got: number; want: number; done?: () => void; data?: Buffer } = { got: 0, want: 0 };

function reportError(err: unknown): void {
  const e = err as Error;
  send({ ev: 'error', message: e.message, name: e.name, ...(err instanceof CollectiveError ? { ...(err.failedRank !== undefined ? { failedRank: err.failedRank } : {}), ...(err.failedAddress ? { failedAddress: err.failedAddress } : {}) } : {}) });
}

async function handle(m: WorkerCommand): Promise<void> {
  switch (m.cmd) {
    case 'open': {
      rank = m.rank;
      const common = {
        rank: m.rank, worldSize: m.worldSize, secret: loadSecret(), log,
        ...(m.segmentBytes ? { segmentBytes: m.segmentBytes } : {}), ...(m.timeoutMs ? { timeoutMs: m.timeoutMs } : {}),
        ...(m.connectTimeoutMs ? { connectTimeoutMs: m.connectTimeoutMs } : {}), ...(m.tls ? { tls: m.tls } : {}),
        ...(m.handshakeTimeoutMs ? { handshakeTimeoutMs: m.handshakeTimeoutMs } : {}),
      };
      node = m.kind === 'ring'
        ? await Ring.open({ ...common, ...(m.joinTimeoutMs ? { joinTimeoutMs: m.joinTimeoutMs } : {}), ...(m.ringId ? { ringId: m.ringId } : {}), ...(m.frameMac === false ? { frameMac: false } : {}) })
        : await Star.open(common);
      send({ ev: 'opened', port: node.port });
      return;
    }
    case 'connect':
      await node!.connect({ host: m.host, port: m.port });
      send({ ev: 'connected' });
      return;
    case 'reduce': {
      const buf = m.input === 'random' ? makeInput(rank, m.length, m.seed ?? 0) : new Float32Array(m.length);
      const tiny = new Float32Array(1);
      const times: number[] = [];
      const cpuMs: number[] = [];
      const stats: CollectiveStats[] = [];
      for (let i = 0; i < (m.warmup ?? 0) + m.reps; i++) {
        if (m.input === 'constant') buf.fill(rank + 1);
        else if (i > 0) buf.set(makeInput(rank, m.length, m.seed ?? 0));
        if (m.barrier) await node!.allReduce(tiny, 'sum');
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        const s = m.wire ? await (node as Ring).allReduce(buf, m.op, { wire: m.wire }) : await node!.allReduce(buf, m.op);
        const dt = performance.now() - t0;
        const c = process.cpuUsage(c0);
        if (i >= (m.warmup ?? 0)) { times.push(dt); stats.push(s); cpuMs.push((c.user + c.system) / 1000); }
        if (i === 0 && m.firstRep) send({ ev: 'first-rep' });
      }
      send({ ev: 'reduced', times, cpuMs, stats, ...(m.returnResult ? { result: buf } : {}) });
      return;
    }
    case 'sequence': {
      if (!(node instanceof Ring)) throw new Error('sequence: only a ring runs every collective');
      const ring = node;
      const results: Float32Array[] = [];
      const stats: (CollectiveStats | null)[] = [];
      for (const c of m.calls) {
        if (c.delayMs) await new Promise((r) => setTimeout(r, c.delayMs));
        if (c.kind === 'barrier') { await ring.barrier(); results.push(new Float32Array(0)); stats.push(null); continue; }
        const buf = makeInput(rank, c.length, c.seed);
        const opts = c.wire ? { wire: c.wire } : {};
        const s = c.kind === 'allReduce' ? await ring.allReduce(buf, c.op, opts)
          : c.kind === 'reduceScatter' ? await ring.reduceScatter(buf, c.op, opts)
            : c.kind === 'allGather' ? await ring.allGather(buf)
              : await ring.broadcast(buf, c.root ?? 0);
        results.push(buf);
        stats.push(s);
      }
      send({ ev: 'sequenced', results, stats });
      return;
    }
    case 'block': {
      const end = performance.now() + m.ms;
      while (performance.now() < end) { /* spin */ }
      send({ ev: 'unblocked' });
      return;
    }
    case 'close':
      await node?.close();
      send({ ev: 'closed' });
      setTimeout(() => process.exit(0), 20);
      return;
    case 'tcp-listen': {
      const srv = net.createServer((sock) => {
        let got = 0;
        let target = 0;
        let header = Buffer.alloc(0);
        sock.on('data', (d: Buffer) => {
          if (target === 0) { // 8-byte length header per transfer
            header = Buffer.concat([header, d]);
            if (header.length < 8) return;
            target = Number(header.readBigUInt64BE(0));
            got = header.length - 8;
            header = Buffer.alloc(0);
          } else got += d.length;
          if (got >= target) { target = 0; got = 0; sock.write('k'); }
        });
        sock.on('error', () => {});
      });
      srv.listen(0, '127.0.0.1', () => send({ ev: 'tcp-port', port: (srv.address() as net.AddressInfo).port }));
      return;
    }
    case 'tcp-send': {
      const chunk = m.writeBytes ?? 1 << 20;
      const data = Buffer.alloc(m.bytes, 1);
      const sock = net.connect(m.port, '127.0.0.1');
      sock.setNoDelay(true);
      await new Promise<void>((r) => sock.once('connect', () => r()));
      const times: number[] = [];
      for (let i = 0; i < m.reps; i++) {
        const t0 = performance.now();
        const hdr = Buffer.alloc(8);
        hdr.writeBigUInt64BE(BigInt(m.bytes));
        sock.write(hdr);
        for (let off = 0; off < m.bytes; off += chunk) {
          if (!sock.write(data.subarray(off, Math.min(m.bytes, off + chunk)))) await new Promise((r) => sock.once('drain', r));
        }
        await new Promise((r) => sock.once('data', r));
        times.push(performance.now() - t0);
      }
      sock.destroy();
      send({ ev: 'tcp-done', times });
      return;
    }
    case 'tcpring-listen': {
      const srv = net.createServer((sock) => {
        tcpRing.inbound = sock;
        sock.on('data', (d: Buffer) => {
          tcpRing.got += d.length;
          if (tcpRing.want > 0 && tcpRing.got >= tcpRing.want && tcpRing.done) { tcpRing.got -= tcpRing.want; const f = tcpRing.done; tcpRing.done = undefined; f(); }
        });
        sock.on('error', () => {});
      });
      srv.listen(0, '127.0.0.1', () => send({ ev: 'tcpring-ready', port: (srv.address() as net.AddressInfo).port }));
      return;
    }
    case 'tcpring-connect': {
      const sock = net.connect(m.port, '127.0.0.1');
      sock.setNoDelay(true);
      sock.on('error', () => {});
      await new Promise<void>((r) => sock.once('connect', () => r()));
      tcpRing.out = sock;
      send({ ev: 'tcpring-ready' });
      return;
    }
    case 'tcpring-run': {
      const chunk = 1 << 20;
      if (!tcpRing.data || tcpRing.data.length < chunk) tcpRing.data = Buffer.alloc(chunk, 1);
      const t0 = performance.now();
      tcpRing.want = m.bytes;
      const received = new Promise<void>((r) => {
        if (tcpRing.got >= m.bytes) { tcpRing.got -= m.bytes; r(); } else tcpRing.done = r;
      });
      for (let off = 0; off < m.bytes; off += chunk) {
        if (!tcpRing.out!.write(tcpRing.data.subarray(0, Math.min(chunk, m.bytes - off)))) await new Promise((r) => tcpRing.out!.once('drain', r));
      }
      await received;
      send({ ev: 'tcpring-done', ms: performance.now() - t0 });
      return;
    }
  }
}

process.on('message', (m: WorkerCommand) => {
  handle(m).catch(reportError);
});
process.on('disconnect', () => process.exit(0));
