/**
 * One rank of bench/cluster.ts, running inside its own network namespace and driven by the bench
 * over IPC (bench/lib/rank-proc.ts). It holds one ring node and one star node listening on the
 * namespace's address, a plain-TCP ring link (the transport's ceiling over the same shaped
 * links), and runs simulated training steps (bench/lib/step-sim.ts). Every command carries an id
 * and is answered once: `{ id, ok: true, ... }` or `{ id, ok: false, error }`.
 * TTC_SECRET comes from the environment; the rank exits when its parent's IPC channel closes.
 */
import net from 'node:net';
import { loadSecret } from '../../wire/auth.ts';
import { Ring } from '../../collective/index.ts';
import { Star } from '../star.ts';
import { runSteps, type StepPlan } from './step-sim.ts';

export type RankCommand =
  | { cmd: 'open'; rank: number; worldSize: number; host: string; segmentBytes: number; timeoutMs: number }
  | { cmd: 'connect'; ringNext: { host: string; port: number }; starRoot: { host: string; port: number } }
  /** `reps` timed all-reduces of `length` floats, each after a 1-element all-reduce on the same group (a barrier) */
  | { cmd: 'reduce'; kind: 'ring' | 'star'; length: number; reps: number }
  | { cmd: 'tcp-listen'; host: string }
  | { cmd: 'tcp-connect'; host: string; port: number }
  /** write `send` bytes to the successor while reading `expect` bytes from the predecessor */
  | { cmd: 'tcp-run'; send: number; expect: number }
  | { cmd: 'step'; plan: StepPlan }
  | { cmd: 'close' };

export type RankReply = { id: number } & (
  | { ok: true; port?: number; starPort?: number; times?: number[]; cpuMs?: number[]; ms?: number; stepMs?: number[]; updateMs?: number; updateNsPerParam?: number; paramsHash?: string }
  | { ok: false; error: string });

let ring: Ring | undefined;
let star: Star | undefined;
const tcp: { out?: net.Socket; got: number; want: number; done?: () => void; data: Buffer } = { got: 0, want: 0, data: Buffer.alloc(1 << 20, 1) };

async function handle(m: RankCommand): Promise<Omit<Extract<RankReply, { ok: true }>, 'id' | 'ok'>> {
  switch (m.cmd) {
    case 'open': {
      const common = { rank: m.rank, worldSize: m.worldSize, secret: loadSecret(), listen: { host: m.host, port: 0 }, segmentBytes: m.segmentBytes, timeoutMs: m.timeoutMs, log: () => {} };
      ring = await Ring.open(common);
      star = await Star.open(common);
      return { port: ring.port, starPort: star.port };
    }
    case 'connect':
      await Promise.all([ring!.connect(m.ringNext), star!.connect(m.starRoot)]);
      return {};
    case 'reduce': {
      const group = m.kind === 'ring' ? ring! : star!;
      const buf = new Float32Array(m.length);
      const tiny = new Float32Array(1);
      const times: number[] = [], cpuMs: number[] = [];
      for (let i = 0; i < m.reps; i++) {
        buf.fill(1);
        await group.allReduce(tiny, 'sum');
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        await group.allReduce(buf, 'sum');
        times.push(performance.now() - t0);
        const c = process.cpuUsage(c0);
        cpuMs.push((c.user + c.system) / 1000);
      }
      return { times, cpuMs };
    }
    case 'tcp-listen': {
      const srv = net.createServer((sock) => {
        sock.on('data', (d: Buffer) => {
          tcp.got += d.length;
          if (tcp.done && tcp.got >= tcp.want) { tcp.got -= tcp.want; const f = tcp.done; tcp.done = undefined; f(); }
        });
        sock.on('error', () => {});
      });
      await new Promise<void>((res, rej) => { srv.once('error', rej); srv.listen(0, m.host, () => res()); });
      return { port: (srv.address() as net.AddressInfo).port };
    }
    case 'tcp-connect': {
      const sock = net.connect(m.port, m.host);
      sock.setNoDelay(true);
      await new Promise<void>((res, rej) => { sock.once('connect', () => res()); sock.once('error', rej); });
      sock.on('error', () => {});
      tcp.out = sock;
      return {};
    }
    case 'tcp-run': {
      const t0 = performance.now();
      tcp.want = m.expect;
      const received = new Promise<void>((r) => {
        if (tcp.got >= m.expect) { tcp.got -= m.expect; r(); } else tcp.done = r;
      });
      for (let off = 0; off < m.send; off += tcp.data.length) {
        const chunk = tcp.data.subarray(0, Math.min(tcp.data.length, m.send - off));
        if (!tcp.out!.write(chunk)) await new Promise((r) => tcp.out!.once('drain', r));
      }
      await received;
      return { ms: performance.now() - t0 };
    }
    case 'step': {
      const res = await runSteps(ring!, m.plan);
      return { stepMs: res.stepMs, updateMs: res.updateMs, updateNsPerParam: res.updateNsPerParam, paramsHash: res.paramsHash };
    }
    case 'close':
      await Promise.allSettled([ring?.close(), star?.close()]);
      setTimeout(() => process.exit(0), 20);
      return {};
  }
}

process.on('message', (msg: RankCommand & { id: number }) => {
  handle(msg).then(
    (r) => process.send?.({ id: msg.id, ok: true, ...r } satisfies RankReply),
    (e: unknown) => process.send?.({ id: msg.id, ok: false, error: (e as Error).message ?? String(e) } satisfies RankReply),
  );
});
process.on('disconnect', () => process.exit(0));
