/**
 * The collective library's ring (collective/index.ts): all-reduce, reduce-scatter, all-gather,
 * broadcast and barrier — correctness (bit-exact against the fixed-order references, identical on
 * all ranks), odd lengths, mixed sequences with staggered ranks, mismatched calls, failures (killed
 * and stalled peers), authentication and hostile input. Real sockets on 127.0.0.1 and real child
 * processes; no mocks.
 */
import test, { type ExecutionContext } from 'ava';
import { rmSync } from 'node:fs';
import { SecretError } from '../wire/auth.ts';
import { CloseCode, encodeMsgpack, getMessageDef, PROTOCOL_VERSION } from '../wire/protocol/index.ts';
import type { Connection } from '../wire/net/index.ts';
import { TtcError } from '../core/errors.ts';
import {
  addInto, bf16Round, chunkLayout, CollectiveError, divideInPlace, referenceAllReduce, referenceReduceScatter, Ring, toBf16InPlace,
  type CollectiveStats, type ReduceOp, type RingOptions,
} from '../collective/index.ts';
import { Star } from '../bench/star.ts';
import { spawnWorker, startGroup, stopGroup, type WorkerProc } from './kit/cluster.ts';
import { makeInput } from './kit/inputs.ts';
import { badFrames, inLanes, rawSession, selfSignedCert } from './kit/netkit.ts';
import { OPENSSL, testIf } from './kit/tools.ts';
import { scaled } from './kit/time-scale.mjs';

const SECRET = 'ring-test-secret-0123456789';

function capture() {
  const lines: string[] = [];
  return { lines, log: (l: string) => { lines.push(l); } };
}

/** Open and connect an in-process ring of N nodes; closed at teardown. */
async function ring(t: ExecutionContext, N: number, opts: Partial<RingOptions> & { secrets?: string[] } = {}): Promise<Ring[]> {
  const nodes = await Promise.all(Array.from({ length: N }, (_, rank) => Ring.open({
    rank, worldSize: N, secret: opts.secrets?.[rank] ?? SECRET, timeoutMs: scaled(5000), connectTimeoutMs: scaled(5000), log: () => {}, ...opts,
  })));
  t.teardown(() => Promise.all(nodes.map((n) => n.close())));
  await Promise.all(nodes.map((n, i) => n.connect(N > 1 ? { host: '127.0.0.1', port: nodes[(i + 1) % N]!.port } : undefined)));
  return nodes;
}

function sameBytes(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Frames received also count the predecessor's heartbeats (every 1000 ms at timeoutMs ≥ 4000): at most this many during a call. */
const heartbeats = (s: CollectiveStats) => 1 + Math.ceil(s.totalMs / 1000);

/** Check results: identical on every rank, equal to the fixed-order reference, close to the exact sum. */
function check(t: ExecutionContext, inputs: Float32Array[], outputs: Float32Array[], op: ReduceOp, what: string): void {
  const N = inputs.length;
  const ref = referenceAllReduce(inputs, op);
  for (let r = 0; r < N; r++) t.true(sameBytes(outputs[r]!, outputs[0]!), `${what}: rank ${r} differs from rank 0`);
  t.true(sameBytes(outputs[0]!, ref), `${what}: differs from the fixed-order reference`);
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    let exact = 0;
    let mag = 0;
    for (const x of inputs) { exact += x[i]!; mag += Math.abs(x[i]!); }
    if (op === 'mean') { exact /= N; mag /= N; }
    worst = Math.max(worst, Math.abs(outputs[0]![i]! - exact) / (mag + 1e-30));
  }
  t.true(worst <= N * 1.2e-7, `${what}: relative error ${worst}`);
}

// ---- in-process rings ------------------------------------------------------------------------

for (const N of [1, 2, 3, 4]) {
  test(`in-process ring N=${N}: sums and means of odd lengths are exact and bit-identical`, async (t) => {
    const nodes = await ring(t, N, { segmentBytes: 4096 });
    const lengths = [0, 1, 2, 3, 5, N - 1, N + 1, 1000, 4097, 65_537].filter((x) => x >= 0);
    for (const length of lengths) {
      for (const op of ['sum', 'mean'] as const) {
        const inputs = nodes.map((_, r) => makeInput(r, length, length));
        const outputs = inputs.map((x) => x.slice());
        const stats = await Promise.all(nodes.map((n, r) => n.allReduce(outputs[r]!, op)));
        check(t, inputs, outputs, op, `N=${N} length=${length} ${op}`);
        if (N > 1 && length >= N) t.is(stats[0]!.bytesSent > 0, true);
      }
    }
    if (N === 1) {
      const x = makeInput(0, 10);
      const y = x.slice();
      await nodes[0]!.allReduce(y, 'mean');
      t.true(sameBytes(x, y), 'N=1 is the identity');
    }
  });
}

test('in-process ring: ranks that run ahead are buffered (staggered back-to-back calls)', async (t) => {
  const N = 3;
  const nodes = await ring(t, N, { segmentBytes: 1024 });
  const length = 5000;
  const results = await Promise.all(nodes.map(async (n, r) => {
    const outs: Float32Array[] = [];
    for (let k = 0; k < 12; k++) {
      if ((k + r) % 3 === 0) await new Promise((res) => setTimeout(res, 5 * r));
      const buf = makeInput(r, length, k);
      await n.allReduce(buf, k % 2 ? 'mean' : 'sum');
      outs.push(buf);
    }
    return outs;
  }));
  for (let k = 0; k < 12; k++) {
    check(t, nodes.map((_, r) => makeInput(r, length, k)), results.map((o) => o[k]!), k % 2 ? 'mean' : 'sum', `call ${k}`);
  }
  t.is(nodes[0]!.lastStats!.seq, 11);
});

test('in-process ring: timing breakdown adds up', async (t) => {
  const nodes = await ring(t, 3, { segmentBytes: 64 * 1024 });
  const bufs = nodes.map((_, r) => makeInput(r, 300_000));
  const stats = await Promise.all(nodes.map((n, r) => n.allReduce(bufs[r]!)));
  for (const s of stats) {
    t.true(s.totalMs > 0);
    t.true(s.addMs > 0 && s.encodeMs > 0 && s.decodeMs > 0);
    t.true(s.waitMs + s.addMs + s.encodeMs + s.decodeMs + s.sendMs <= s.totalMs * 1.05 + 1);
    // 2(N−1) steps × 7 segments per 100k-float chunk + ring-start (+ the predecessor's heartbeats on a slow machine)
    const frames = 2 * 2 * Math.ceil(100_000 / 16_384) + 1;
    t.true(s.framesReceived >= frames && s.framesReceived <= frames + heartbeats(s), `${s.framesReceived} frames received`);
    t.true(Math.abs(s.bytesSent - (2 * 2 / 3) * 1_200_000) < 10_000, `sent ${s.bytesSent}`);
  }
});

test('in-process ring: mismatched lengths fail on both sides with a clear message', async (t) => {
  const nodes = await ring(t, 2);
  const errs = await Promise.allSettled([nodes[0]!.allReduce(new Float32Array(10)), nodes[1]!.allReduce(new Float32Array(11))]);
  for (const e of errs) {
    t.is(e.status, 'rejected');
    t.true((e as PromiseRejectedResult).reason instanceof CollectiveError);
    t.regex(((e as PromiseRejectedResult).reason as Error).message, /every rank must pass the same length and op/);
  }
});

test('in-process ring: misuse is rejected (before connect, concurrent call, not a Float32Array)', async (t) => {
  const lone = await Ring.open({ rank: 0, worldSize: 2, secret: SECRET, log: () => {} });
  t.teardown(() => lone.close());
  await t.throwsAsync(lone.allReduce(new Float32Array(1)), { instanceOf: CollectiveError, message: /before connect/ });
  const nodes = await ring(t, 2);
  const p = nodes[0]!.allReduce(new Float32Array(100));
  await t.throwsAsync(nodes[0]!.allReduce(new Float32Array(100)), { message: /already in progress/ });
  await t.throwsAsync(nodes[0]!.allReduce([1, 2] as unknown as Float32Array), { instanceOf: TypeError });
  await Promise.all([p, nodes[1]!.allReduce(new Float32Array(100))]);
  await t.throwsAsync(Ring.open({ rank: 2, worldSize: 2, secret: SECRET }), { instanceOf: RangeError });
});

test('ring auth: a peer with the wrong secret is refused, logged on both sides', async (t) => {
  const a = capture();
  const b = capture();
  const r0 = await Ring.open({ rank: 0, worldSize: 2, secret: SECRET, log: a.log, connectTimeoutMs: scaled(3000) });
  const r1 = await Ring.open({ rank: 1, worldSize: 2, secret: 'a-different-secret-0123456789', log: b.log, connectTimeoutMs: scaled(3000) });
  t.teardown(() => Promise.all([r0.close(), r1.close()]));
  const [c0, c1] = await Promise.allSettled([r0.connect({ host: '127.0.0.1', port: r1.port }), r1.connect({ host: '127.0.0.1', port: r0.port })]);
  t.is(c0.status, 'rejected');
  t.is(c1.status, 'rejected');
  t.regex(((c0 as PromiseRejectedResult).reason as Error).message, /ring peer rank 1 at ws:\/\/127\.0\.0\.1:\d+ refused us: authentication failed — check TTC_SECRET/);
  t.regex(a.lines.join('\n'), /auth failed: wrong secret from 127\.0\.0\.1:\d+ \(role=peer, name="ring\/rank-1"\)/);
  t.regex(b.lines.join('\n'), /auth failed: wrong secret from 127\.0\.0\.1:\d+ \(role=peer, name="ring\/rank-0"\)/);
  t.regex(b.lines.join('\n'), /ring peer rank 0 at ws:\/\/127\.0\.0\.1:\d+ refused us: authentication failed — check TTC_SECRET/);
});

test('ring auth: a missing secret is refused before anything listens (in-process and in a worker process)', async (t) => {
  await t.throwsAsync(Ring.open({ rank: 0, worldSize: 2, secret: undefined as unknown as string }), { instanceOf: SecretError, message: /no shared secret: set TTC_SECRET or TTC_SECRET_FILE/ });
  await t.throwsAsync(Ring.open({ rank: 0, worldSize: 2, secret: 'short' }), { instanceOf: SecretError });
  const w = spawnWorker('no-secret', { TTC_SECRET: undefined, TTC_SECRET_FILE: undefined });
  t.teardown(() => w.kill());
  const err = await t.throwsAsync(w.request({ cmd: 'open', kind: 'ring', rank: 0, worldSize: 2 }, 'opened', 20_000));
  t.regex(err!.message, /no shared secret/);
});

test('ring: a peer speaking another protocol version is refused with 4406; the ring still works', async (t) => {
  const logs = capture();
  const nodes = await ring(t, 2, { log: logs.log });
  const FUTURE = PROTOCOL_VERSION + 1;
  const r = await rawSession(`ws://127.0.0.1:${nodes[0]!.port}`, { kind: 'future', bytes: encodeMsgpack({ v: FUTURE, t: 'hello', role: 'peer', name: 'future', nonce: new Uint8Array(32) }) });
  t.is(r.code, CloseCode.VERSION);
  t.regex(r.reason, new RegExp(`protocol version ${FUTURE} not supported \\(this side speaks ${PROTOCOL_VERSION}\\)`));
  t.regex(logs.lines.join('\n'), new RegExp(`refused 127\\.0\\.0\\.1:\\d+ \\(expected "hello"\\): protocol version ${FUTURE} not supported`));
  const bufs = nodes.map((_, i) => makeInput(i, 100));
  const inputs = bufs.map((b) => b.slice());
  await Promise.all(nodes.map((n, i) => n.allReduce(bufs[i]!)));
  check(t, inputs, bufs, 'sum', 'after version probe');
});

testIf(OPENSSL, 'openssl not installed')('ring over wss:// (TLS) is correct', async (t) => {
  const tls = selfSignedCert();
  if (!tls) throw new Error('openssl could not make a certificate');
  t.teardown(() => rmSync(tls.dir, { recursive: true, force: true }));
  const nodes = await ring(t, 3, { tls: { cert: tls.cert, key: tls.key, ca: tls.cert }, segmentBytes: 16 * 1024 });
  t.true(nodes[0]!.url.startsWith('wss://'));
  const inputs = nodes.map((_, r) => makeInput(r, 50_001));
  const outs = inputs.map((x) => x.slice());
  await Promise.all(nodes.map((n, r) => n.allReduce(outs[r]!, 'mean')));
  check(t, inputs, outs, 'mean', 'tls');
});

test('star baseline: same results on every rank, close to the exact sum', async (t) => {
  const N = 3;
  const stars = await Promise.all(Array.from({ length: N }, (_, rank) => Star.open({ rank, worldSize: N, secret: SECRET, segmentBytes: 4096, log: () => {} })));
  t.teardown(() => Promise.all(stars.map((s) => s.close())));
  await Promise.all(stars.map((s) => s.connect({ host: '127.0.0.1', port: stars[0]!.port })));
  for (const length of [0, 1, 10_001]) {
    const inputs = stars.map((_, r) => makeInput(r, length));
    const outs = inputs.map((x) => x.slice());
    await Promise.all(stars.map((s, r) => s.allReduce(outs[r]!, 'mean')));
    for (const o of outs) t.true(sameBytes(o, outs[0]!));
    for (let i = 0; i < length; i++) t.true(Math.abs(outs[0]![i]! - (inputs[0]![i]! + inputs[1]![i]! + inputs[2]![i]!) / 3) < 1e-4);
  }
});

// ---- the other collectives -------------------------------------------------------------------

type Spec =
  | { kind: 'allReduce' | 'reduceScatter'; op: ReduceOp }
  | { kind: 'allGather' }
  | { kind: 'broadcast'; root: number }
  | { kind: 'barrier' };

const describeSpec = (s: Spec) => ('op' in s ? `${s.kind}/${s.op}` : 'root' in s ? `${s.kind}/root ${s.root}` : s.kind);

/** Issue one collective with `spec` on one rank, in place on `buf`. */
function issue(n: Ring, spec: Spec, buf: Float32Array): Promise<CollectiveStats | undefined> {
  switch (spec.kind) {
    case 'allReduce': return n.allReduce(buf, spec.op);
    case 'reduceScatter': return n.reduceScatter(buf, spec.op);
    case 'allGather': return n.allGather(buf);
    case 'broadcast': return n.broadcast(buf, spec.root);
    case 'barrier': return n.barrier().then(() => undefined);
  }
}

/** Every rank runs `spec` at once on a copy of its input; returns the buffers afterwards and the stats. */
async function collective(nodes: Ring[], spec: Spec, inputs: Float32Array[]): Promise<{ outs: Float32Array[]; stats: (CollectiveStats | undefined)[] }> {
  const outs = inputs.map((x) => x.slice());
  const stats = await Promise.all(nodes.map((n, r) => issue(n, spec, outs[r]!)));
  return { outs, stats };
}

/** allGather's expected result: chunk c from rank c's input. */
function gathered(inputs: Float32Array[]): Float32Array {
  const N = inputs.length;
  const lay = chunkLayout(inputs[0]!.length, N);
  const out = new Float32Array(inputs[0]!.length);
  for (let c = 0; c < N; c++) out.set(inputs[c]!.subarray(lay.start[c]!, lay.start[c]! + lay.len[c]!), lay.start[c]!);
  return out;
}

/** The results of `spec` on `inputs` are bit-exact: what every rank must hold (reduceScatter: its own chunk). */
function verify(t: ExecutionContext, spec: Spec, inputs: Float32Array[], outs: Float32Array[], what: string): void {
  const N = inputs.length;
  switch (spec.kind) {
    case 'allReduce':
      check(t, inputs, outs, spec.op, what);
      return;
    case 'reduceScatter': {
      const ref = referenceReduceScatter(inputs, spec.op);
      const lay = chunkLayout(inputs[0]!.length, N);
      for (let r = 0; r < N; r++) {
        t.true(sameBytes(outs[r]!.subarray(lay.start[r]!, lay.start[r]! + lay.len[r]!), ref[r]!), `${what}: rank ${r}'s chunk differs from the reference`);
        // the reference's chunk r is the all-reduce's chunk r
        t.true(sameBytes(ref[r]!, referenceAllReduce(inputs, spec.op).subarray(lay.start[r]!, lay.start[r]! + lay.len[r]!)), `${what}: references disagree`);
      }
      return;
    }
    case 'allGather': {
      const ref = gathered(inputs);
      for (let r = 0; r < N; r++) t.true(sameBytes(outs[r]!, ref), `${what}: rank ${r} differs from the gathered chunks`);
      return;
    }
    case 'broadcast':
      for (let r = 0; r < N; r++) t.true(sameBytes(outs[r]!, inputs[spec.root]!), `${what}: rank ${r} differs from root ${spec.root}'s input`);
      return;
    case 'barrier':
      return;
  }
}

for (const N of [1, 2, 3, 4]) {
  test(`in-process ring N=${N}: reduceScatter, allGather and broadcast (every root) of odd lengths are exact; reduceScatter + allGather = allReduce bit for bit`, async (t) => {
    const nodes = await ring(t, N, { segmentBytes: 4096 });
    const lengths = [...new Set([0, 1, 2, N - 1, N, N + 1, 1000, 4097, 65_537])];
    for (const length of lengths) {
      const inputs = nodes.map((_, r) => makeInput(r, length, 7 * length + 1));
      const specs: Spec[] = [
        { kind: 'reduceScatter', op: 'sum' }, { kind: 'reduceScatter', op: 'mean' }, { kind: 'allGather' },
        ...nodes.map((_, root) => ({ kind: 'broadcast' as const, root })),
      ];
      for (const spec of specs) {
        const what = `N=${N} length=${length} ${describeSpec(spec)}`;
        const { outs, stats } = await collective(nodes, spec, inputs);
        verify(t, spec, inputs, outs, what);
        for (const s of stats) {
          t.is(s!.kind, spec.kind, what);
          t.is(s!.elements, length, what);
          if ('root' in spec) t.is(s!.root, spec.root, what);
          if ('op' in spec) t.is(s!.op, spec.op, what);
        }
      }
      for (const op of ['sum', 'mean'] as const) {
        const what = `N=${N} length=${length} ${op}: reduceScatter then allGather`;
        const { outs: viaAllReduce } = await collective(nodes, { kind: 'allReduce', op }, inputs);
        const { outs: scattered } = await collective(nodes, { kind: 'reduceScatter', op }, inputs);
        const { outs: twoStep } = await collective(nodes, { kind: 'allGather' }, scattered);
        check(t, inputs, twoStep, op, what);
        for (let r = 0; r < N; r++) t.true(sameBytes(twoStep[r]!, viaAllReduce[r]!), `${what}: rank ${r} differs from allReduce`);
      }
    }
    if (N === 1) {
      const x = makeInput(0, 10);
      for (const spec of [{ kind: 'reduceScatter', op: 'mean' }, { kind: 'allGather' }, { kind: 'broadcast', root: 0 }] as Spec[]) {
        const { outs } = await collective(nodes, spec, [x]);
        t.true(sameBytes(outs[0]!, x), `N=1 ${describeSpec(spec)} is the identity`);
      }
      await nodes[0]!.barrier();
    }
  });
}

test('in-process ring: each collective moves the bytes it should (frames and bytes per rank)', async (t) => {
  const N = 3;
  const nodes = await ring(t, N, { segmentBytes: 64 * 1024 });
  const length = 300_000; // 3 chunks of 100 000 floats = 7 segments each
  const inputs = nodes.map((_, r) => makeInput(r, length));
  const perChunk = Math.ceil(100_000 / 16_384);
  const bytes = length * 4;
  const expect: [Spec, number, number][] = [ // frames received (segments + ring-start), share of the bytes each rank sends
    [{ kind: 'allReduce', op: 'sum' }, 2 * (N - 1) * perChunk + 1, (2 * (N - 1)) / N],
    [{ kind: 'reduceScatter', op: 'sum' }, (N - 1) * perChunk + 1, (N - 1) / N],
    [{ kind: 'allGather' }, (N - 1) * perChunk + 1, (N - 1) / N],
  ];
  for (const [spec, frames, share] of expect) {
    const { stats } = await collective(nodes, spec, inputs);
    for (const s of stats) {
      t.true(s!.framesReceived - frames >= 0 && s!.framesReceived - frames <= heartbeats(s!), `${describeSpec(spec)}: ${s!.framesReceived} frames received`);
      t.true(Math.abs(s!.bytesSent - share * bytes) < 10_000, `${describeSpec(spec)}: sent ${s!.bytesSent}`);
      t.true(s!.waitMs + s!.addMs + s!.encodeMs + s!.decodeMs + s!.sendMs <= s!.totalMs * 1.05 + 1);
    }
  }
  // broadcast from rank 1: 1 → 2 → 0; rank 0 does not forward (its successor is the root)
  const { stats } = await collective(nodes, { kind: 'broadcast', root: 1 }, inputs);
  const segs = Math.ceil(length / 16_384);
  t.deepEqual(stats.map((s) => s!.framesSent), [0, segs, segs]);
  for (const [r, want] of [segs + 1, 1, segs + 1].entries()) {
    const got = stats[r]!.framesReceived;
    t.true(got - want >= 0 && got - want <= heartbeats(stats[r]!), `broadcast: rank ${r} received ${got} frames, expected ${want}`);
  }
});

test('in-process ring: a mixed sequence of collectives back to back, ranks staggered, is exact (frames of later calls are buffered)', async (t) => {
  const N = 4;
  const nodes = await ring(t, N, { segmentBytes: 1024 });
  const plan: { spec: Spec; length: number }[] = [];
  const kinds: Spec[] = [
    { kind: 'allReduce', op: 'sum' }, { kind: 'broadcast', root: 2 }, { kind: 'reduceScatter', op: 'mean' }, { kind: 'allGather' },
    { kind: 'barrier' }, { kind: 'broadcast', root: 0 }, { kind: 'allReduce', op: 'mean' }, { kind: 'reduceScatter', op: 'sum' },
    { kind: 'broadcast', root: 3 }, { kind: 'allGather' }, { kind: 'broadcast', root: 1 }, { kind: 'barrier' },
  ];
  for (let k = 0; k < 24; k++) plan.push({ spec: kinds[k % kinds.length]!, length: [5000, 1, 0, 4097, 3, 70_001][k % 6]! });
  // then a run of broadcasts from root 2 while rank 1 lags: ranks 3 and 0 may get two calls ahead of it
  for (let k = 0; k < 8; k++) plan.push({ spec: { kind: 'broadcast', root: 2 }, length: 3000 + k });
  const lag = (r: number, k: number) => (k >= 24 ? (r === 1 ? 8 : 0) : (k + r) % 3 === 0 ? 4 * r : 0);
  const results = await Promise.all(nodes.map(async (n, r) => {
    const outs: Float32Array[] = [];
    for (let k = 0; k < plan.length; k++) {
      const ms = lag(r, k);
      if (ms) await new Promise((res) => setTimeout(res, ms));
      const buf = makeInput(r, plan[k]!.length, k);
      await issue(n, plan[k]!.spec, buf);
      outs.push(buf);
    }
    return outs;
  }));
  for (let k = 0; k < plan.length; k++) {
    const { spec, length } = plan[k]!;
    verify(t, spec, nodes.map((_, r) => makeInput(r, length, k)), results.map((o) => o[k]!), `call ${k} ${describeSpec(spec)} length ${length}`);
  }
  t.is(nodes[0]!.lastStats!.seq, plan.length - 1);
  t.is(nodes[0]!.lastStats!.kind, 'broadcast');
});

test('in-process ring: barrier resolves on every rank only once every rank has called it', async (t) => {
  const N = 3;
  const nodes = await ring(t, N);
  const settled = [false, false, false];
  const early = [nodes[0]!.barrier(), nodes[1]!.barrier()].map((p, r) => p.then(() => { settled[r] = true; }));
  // let the first two ranks' frames travel (socket I/O runs between these turns of the event loop)
  for (let i = 0; i < 200; i++) await new Promise((res) => setImmediate(res));
  t.deepEqual(settled, [false, false, false], 'no rank passes the barrier before rank 2 calls it');
  const last = nodes[2]!.barrier().then(() => { settled[2] = true; });
  await Promise.all([...early, last]);
  t.deepEqual(settled, [true, true, true]);
  t.is(nodes[2]!.lastStats!.kind, 'barrier');
  // barriers between other calls keep the sequence numbers in step
  const bufs = nodes.map((_, r) => makeInput(r, 100));
  await Promise.all(nodes.map(async (n, r) => { await n.barrier(); await n.allReduce(bufs[r]!); await n.barrier(); }));
  check(t, nodes.map((_, r) => makeInput(r, 100)), bufs, 'sum', 'between barriers');
});

for (const [name, specs, a, b] of [
  ['lengths', [{ kind: 'reduceScatter', op: 'sum' }, { kind: 'reduceScatter', op: 'sum' }], 10, 11],
  ['ops', [{ kind: 'allReduce', op: 'sum' }, { kind: 'allReduce', op: 'mean' }], 10, 10],
  ['kinds', [{ kind: 'allReduce', op: 'sum' }, { kind: 'allGather' }], 10, 10],
  ['roots', [{ kind: 'broadcast', root: 0 }, { kind: 'broadcast', root: 1 }], 10, 10],
  ['calls (barrier vs broadcast)', [{ kind: 'barrier' }, { kind: 'broadcast', root: 0 }], 1, 1],
] as [string, [Spec, Spec], number, number][]) {
  test(`in-process ring N=3: mismatched ${name} fail on every rank with a message naming both calls`, async (t) => {
    const N = 3; // ranks 0 and 1 issue the first call, rank 2 the second
    const nodes = await ring(t, N);
    const calls = nodes.map((n, r) => issue(n, r < 2 ? specs[0] : specs[1], new Float32Array(r < 2 ? a : b)));
    const settled = await Promise.allSettled(calls);
    const describe = (s: Spec, length: number) => s.kind === 'barrier' ? 'barrier'
      : `${s.kind}(${length} elements${'op' in s ? `, ${s.op}` : ''}${'root' in s ? `, root ${s.root}` : ''})`;
    for (const [r, e] of settled.entries()) {
      // Ranks 2 and 0 see a predecessor whose call differs from theirs: their call fails. Rank 1's
      // predecessor issued the same call, and a broadcast from rank 0 may complete on rank 1 before
      // the abort reaches it; then the ring has failed under it and its next call rejects.
      if (r !== 1) t.is(e.status, 'rejected', `rank ${r}`);
      const err = (e.status === 'rejected' ? e.reason : await nodes[r]!.barrier().then(() => undefined, (x: unknown) => x)) as CollectiveError;
      t.true(err instanceof CollectiveError && err instanceof TtcError, `rank ${r}: ${err}`);
      t.is(err.code, 'TTC_ERR_COLLECTIVE');
      t.is(err.name, 'CollectiveError');
      t.regex(err.message, /mismatch: rank \d called .* rank \d called .* — every rank must pass the same length and op \(and wire\), and issue the same collectives \(kind, root\) in the same order/);
      t.true(err.message.includes(describe(specs[0], a)) && err.message.includes(describe(specs[1], b)), `rank ${r}: ${err.message}`);
      t.is(nodes[r]!.error, err);
    }
  });
}

test('in-process ring: misuse of the other collectives is rejected (before connect, concurrent call, bad arguments)', async (t) => {
  const lone = await Ring.open({ rank: 0, worldSize: 2, secret: SECRET, log: () => {} });
  t.teardown(() => lone.close());
  await t.throwsAsync(lone.reduceScatter(new Float32Array(1)), { instanceOf: CollectiveError, message: /reduceScatter before connect/ });
  await t.throwsAsync(lone.allGather(new Float32Array(1)), { instanceOf: CollectiveError, message: /allGather before connect/ });
  await t.throwsAsync(lone.broadcast(new Float32Array(1), 0), { instanceOf: CollectiveError, message: /broadcast before connect/ });
  await t.throwsAsync(lone.barrier(), { instanceOf: CollectiveError, message: /barrier before connect/ });
  const nodes = await ring(t, 2);
  await t.throwsAsync(nodes[0]!.broadcast(new Float32Array(4), 2), { instanceOf: RangeError });
  await t.throwsAsync(nodes[0]!.broadcast(new Float32Array(4), -1), { instanceOf: RangeError });
  await t.throwsAsync(nodes[0]!.reduceScatter(new Float32Array(4), 'max' as ReduceOp), { instanceOf: TypeError });
  await t.throwsAsync(nodes[0]!.allGather(new Float64Array(4) as unknown as Float32Array), { instanceOf: TypeError });
  const p = nodes[0]!.broadcast(new Float32Array(100), 1);
  await t.throwsAsync(nodes[0]!.allGather(new Float32Array(100)), { instanceOf: CollectiveError, message: /already in progress on this rank \(broadcast #0\)/ });
  await t.throwsAsync(nodes[0]!.barrier(), { message: /already in progress/ });
  await Promise.all([p, nodes[1]!.broadcast(new Float32Array(100).fill(3), 1)]);
  // a closed ring refuses; a pending call rejects on close
  const q = nodes[1]!.allGather(new Float32Array(10));
  await nodes[1]!.close();
  await t.throwsAsync(q, { instanceOf: CollectiveError, message: /ring closed during allGather #1/ });
  await t.throwsAsync(nodes[1]!.barrier(), { instanceOf: CollectiveError, message: /closed/ });
});

// ---- byte-exact gathers, bf16 wire, segment frames ---------------------------------------------

/** Bit patterns a float32 add would not keep: NaN payloads (quiet, signalling, negative), ±0, ±Inf, subnormals. */
function oddPatterns(rank: number, length: number): Float32Array {
  const u = new Uint32Array(length);
  const special = [0x7fc00001, 0x7f800001, 0xffffffff, 0xffc12345, 0x7fbfffff, 0x80000000, 0x00000001, 0x7f800000, 0xff800000, 0x807fffff];
  // halves of float64 values viewed as float32: what a caller gathering float64 partial sums sends
  const f64 = new Float64Array(u.buffer, 0, Math.floor(length / 2));
  for (let i = 0; i < f64.length; i++) f64[i] = (i + 1) * 1e-300 * (rank + 1) + i * Math.PI * 1e10;
  for (let i = 0; i < length; i += 7) u[i] = special[(i / 7 + rank) % special.length]!;
  return new Float32Array(u.buffer);
}

for (const N of [2, 3, 4]) {
  test(`in-process ring N=${N}: allGather and broadcast copy bytes: NaN payloads and float64 halves arrive bit for bit`, async (t) => {
    const nodes = await ring(t, N, { segmentBytes: 4096 });
    for (const length of [1, 7, N + 1, 1001, 4097, 30_001]) {
      const inputs = nodes.map((_, r) => oddPatterns(r, length));
      const { outs } = await collective(nodes, { kind: 'allGather' }, inputs);
      verify(t, { kind: 'allGather' }, inputs, outs, `N=${N} length=${length} allGather`);
      for (let root = 0; root < N; root++) {
        const b = await collective(nodes, { kind: 'broadcast', root }, inputs);
        verify(t, { kind: 'broadcast', root }, inputs, b.outs, `N=${N} length=${length} broadcast root ${root}`);
      }
    }
  });
}

test('bf16Round / toBf16InPlace: round to nearest even, NaN stays NaN, overflow to Inf', (t) => {
  const f = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0]!;
  const bits = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0]!;
  t.is(bf16Round(1), 1);
  t.is(bf16Round(f(0x3f808000)), 1, 'a tie rounds to the even neighbour (down)');
  t.is(bits(bf16Round(f(0x3f818000))), 0x3f820000, 'a tie rounds to the even neighbour (up)');
  t.is(bits(bf16Round(f(0x3f808001))), 0x3f810000, 'above the tie rounds up');
  t.is(bits(bf16Round(f(0x3f807fff))), 0x3f800000, 'below the tie rounds down');
  t.is(bf16Round(-2.5), -2.5);
  t.is(bf16Round(Infinity), Infinity);
  t.is(bf16Round(f(0x7f7fffff)), Infinity, 'the largest float32 rounds up to Inf');
  t.true(Number.isNaN(bf16Round(NaN)));
  t.true(Number.isNaN(bf16Round(f(0x7f800001))), 'a NaN whose payload sits in the low half stays NaN');
  t.is(Object.is(bf16Round(-0), -0), true);
  const a = makeInput(0, 1000).map((x, i) => x * 10 ** ((i % 20) - 10));
  const b = toBf16InPlace(a.slice());
  for (let i = 0; i < a.length; i++) t.is(b[i], bf16Round(a[i]!));
  for (let i = 0; i < a.length; i++) t.true(Math.abs(b[i]! - a[i]!) <= Math.abs(a[i]!) * 2 ** -8);
});

test('addInto and divideInPlace (wasm SIMD for long arrays) equal the scalar float32 loops bit for bit', (t) => {
  for (const length of [1, 3, 63, 64, 65, 1000, 262_143, 262_144, 300_001]) {
    const a = makeInput(1, length, length).map((x, i) => (i % 97 === 0 ? 1e38 : i % 89 === 0 ? 1e-42 : x * 10 ** ((i % 11) - 5)));
    const b = makeInput(2, length, length);
    const sum = a.slice();
    addInto(sum, 0, b);
    const q = a.slice();
    divideInPlace(q, 3);
    let bad = 0;
    for (let i = 0; i < length; i++) {
      if (!Object.is(sum[i], Math.fround(a[i]! + b[i]!))) bad++;
      if (!Object.is(q[i], Math.fround(a[i]! / 3))) bad++;
    }
    t.is(bad, 0, `length ${length}`);
    // an offset into the destination
    const dst = new Float32Array(length + 5).fill(0.5);
    addInto(dst, 5, b);
    t.true(dst.subarray(5).every((x, i) => Object.is(x, Math.fround(0.5 + b[i]!))), `length ${length} at offset 5`);
  }
});

for (const N of [2, 3, 4]) {
  test(`in-process ring N=${N}: bf16 wire: reduceScatter and allReduce equal the bf16 references bit for bit, identical on every rank`, async (t) => {
    const nodes = await ring(t, N, { segmentBytes: 4096 });
    for (const length of [...new Set([1, N - 1, N, N + 1, 1000, 4097, 65_537])]) {
      for (const op of ['sum', 'mean'] as const) {
        const what = `N=${N} length=${length} ${op} bf16`;
        const inputs = nodes.map((_, r) => makeInput(r, length, 3 * length + 1));
        const rsOuts = inputs.map((x) => x.slice());
        const rsStats = await Promise.all(nodes.map((n, r) => n.reduceScatter(rsOuts[r]!, op, { wire: 'bf16' })));
        const ref = referenceReduceScatter(inputs, op, { wire: 'bf16' });
        const lay = chunkLayout(length, N);
        for (let r = 0; r < N; r++) t.true(sameBytes(rsOuts[r]!.subarray(lay.start[r]!, lay.start[r]! + lay.len[r]!), ref[r]!), `${what}: rank ${r}'s chunk`);
        t.is(rsStats[0]!.wire, 'bf16');
        const arOuts = inputs.map((x) => x.slice());
        const arStats = await Promise.all(nodes.map((n, r) => n.allReduce(arOuts[r]!, op, { wire: 'bf16' })));
        const full = referenceAllReduce(inputs, op, { wire: 'bf16' });
        for (let r = 0; r < N; r++) t.true(sameBytes(arOuts[r]!, full), `${what}: allReduce on rank ${r}`);
        const { outs: twoStep } = await collective(nodes, { kind: 'allGather' }, rsOuts);
        for (let r = 0; r < N; r++) t.true(sameBytes(twoStep[r]!, arOuts[r]!), `${what}: reduceScatter + allGather = allReduce on rank ${r}`);
        // close to the exact result: one bf16 rounding per hop
        let worst = 0;
        for (let i = 0; i < length; i++) {
          let exact = 0;
          let mag = 0;
          for (const x of inputs) { exact += x[i]!; mag += Math.abs(x[i]!); }
          if (op === 'mean') { exact /= N; mag /= N; }
          worst = Math.max(worst, Math.abs(full[i]! - exact) / (mag + 1e-30));
        }
        t.true(worst <= (N - 1) * 2 ** -8 + N * 1.2e-7, `${what}: relative error ${worst}`);
        if (length >= 1000) {
          t.false(sameBytes(full, referenceAllReduce(inputs, op)), `${what}: differs from the f32 wire`);
          // the reduce-scatter's segments travel at half the bytes
          const f32Bytes = (length * 4 * (N - 1)) / N;
          t.true(arStats[0]!.bytesSent < f32Bytes * 1.5 + 10_000 && arStats[0]!.bytesSent > f32Bytes * 1.5 - 10_000, `${what}: sent ${arStats[0]!.bytesSent}`);
        }
      }
    }
  });
}

test('in-process ring N=3: a mismatched wire fails every rank with a message naming both calls', async (t) => {
  const nodes = await ring(t, 3);
  const settled = await Promise.allSettled(nodes.map((n, r) => n.allReduce(new Float32Array(10), 'sum', r === 2 ? { wire: 'bf16' } : {})));
  for (const [r, e] of settled.entries()) {
    t.is(e.status, 'rejected', `rank ${r}`);
    const err = (e as PromiseRejectedResult).reason as CollectiveError;
    t.true(err instanceof CollectiveError);
    t.true(err.message.includes('allReduce(10 elements, sum, bf16 wire)') && err.message.includes('allReduce(10 elements, sum)'), err.message);
  }
  const [lone] = await ring(t, 2);
  await t.throwsAsync(lone!.allReduce(new Float32Array(4), 'sum', { wire: 'fp8' as 'bf16' }), { instanceOf: TypeError, message: /wire must be 'f32' or 'bf16'/ });
});

/** A 24-byte segment header (the ring's raw data frame, docs/protocol.md), fields as given. */
function segmentHead(f: { tag?: number; format?: number; phase?: number; wire?: number; seq?: number; step?: number; index?: number; segment?: number; elements: number }): Buffer {
  const b = Buffer.alloc(24);
  b[0] = f.tag ?? 0xc1;
  b[1] = f.format ?? 1;
  b[2] = f.phase ?? 0;
  b[3] = f.wire ?? 0;
  b.writeUInt32LE(f.seq ?? 0, 4);
  b.writeUInt32LE(f.step ?? 0, 8);
  b.writeUInt32LE(f.index ?? 0, 12);
  b.writeUInt32LE(f.segment ?? 0, 16);
  b.writeUInt32LE(f.elements, 20);
  return b;
}

for (const [name, frame, ringStarted, reason] of [
  ['a frame shorter than its header', [Buffer.from([0xc1, 1, 0])], false, /malformed segment frame: segment frame of 3 bytes, shorter than its 24-byte header/],
  ['an unknown format', [segmentHead({ format: 9, elements: 0 })], false, /malformed segment frame: segment frame format 9, expected 1/],
  ['an unknown phase', [segmentHead({ phase: 7, elements: 0 }), Buffer.alloc(0)], false, /malformed segment frame: segment frame with unknown phase code 7/],
  ['an unknown wire format', [segmentHead({ wire: 5, elements: 0 }), Buffer.alloc(0)], false, /malformed segment frame: segment frame with unknown wire format code 5/],
  ['a payload of the wrong size', [segmentHead({ elements: 4 }), Buffer.alloc(12)], false, /malformed segment frame: segment frame of 4 f32 elements carries 12 payload bytes, expected 16/],
  ['one header and payload in one fragment', [Buffer.concat([segmentHead({ seq: 7, elements: 2 }), Buffer.alloc(8)])], false, /rs segment for call #7, expected #0/],
  ['a segment before ring-start', [segmentHead({ elements: 50 }), Buffer.alloc(200)], false, /segment before ring-start/],
  ['a bf16 segment in an f32 call', [segmentHead({ wire: 1, index: 1, elements: 50 }), Buffer.alloc(100)], true, /rs segment in bf16, expected f32 in allReduce #0/],
  ['a segment with the wrong element count', [segmentHead({ index: 1, elements: 49 }), Buffer.alloc(196)], true, /segment rs\/0\/1\/0 has 49 elements, expected 50/],
  ['a segment of the wrong chunk', [segmentHead({ index: 0, elements: 50 }), Buffer.alloc(200)], true, /rs step 0: chunk 0, expected 1/],
] as [string, Buffer[], boolean, RegExp][]) {
  test(`in-process ring N=2: a segment frame with ${name} is a protocol violation naming the sender; nothing crashes`, async (t) => {
    const nodes = await ring(t, 2);
    const link = (nodes[0] as unknown as { links: { next: Connection } }).links.next;
    // rank 1 runs allReduce(100 elements) (its step-0 rs segment from rank 0 is chunk 1, 50 elements); rank 0 does not, we speak for it
    const pending = nodes[1]!.allReduce(new Float32Array(100));
    if (ringStarted) link.send(getMessageDef('ring-start')!, { seq: 0, kind: 'allReduce', length: 100, op: 'sum' });
    link.sendRaw(frame[0]!, frame[1] ?? Buffer.alloc(0)); // a single buffer goes with an empty second fragment
    const err = await t.throwsAsync(pending, { instanceOf: CollectiveError });
    t.is(err!.failedRank, 0);
    t.regex(err!.message, /protocol violation by rank 0 \(127\.0\.0\.1:\d+\)/);
    t.regex(err!.message, reason);
    t.is(nodes[1]!.error, err);
  });
}

// ---- worker processes ------------------------------------------------------------------------

/** N ring ranks in worker processes; their own limits grow with the load (a starved rank is slow, not dead). */
async function group(t: ExecutionContext, N: number, opts: { timeoutMs?: number; segmentBytes?: number } = {}): Promise<WorkerProc[]> {
  const procs = await startGroup({ kind: 'ring', worldSize: N, secret: SECRET, timeoutMs: opts.timeoutMs ?? scaled(5000), segmentBytes: opts.segmentBytes ?? 64 * 1024, connectTimeoutMs: scaled(20_000), handshakeTimeoutMs: scaled(1000) });
  t.teardown(() => { for (const p of procs) { p.kill('SIGCONT'); p.kill(); } });
  return procs;
}

for (const N of [3, 4]) {
  test.serial(`process ring N=${N}: exact, bit-identical results across processes`, async (t) => {
    const procs = await group(t, N);
    for (const [length, op] of [[100_003, 'sum'], [N - 1, 'mean'], [7, 'sum'], [0, 'sum'], [262_144, 'mean']] as const) {
      const res = await Promise.all(procs.map((p) => p.request({ cmd: 'reduce', length, op, reps: 1, input: 'random', seed: length, returnResult: true }, 'reduced', 30_000)));
      check(t, procs.map((_, r) => makeInput(r, length, length)), res.map((r) => r.result!), op, `N=${N} length=${length}`);
    }
    await stopGroup(procs);
    for (const p of procs) t.is(p.exited?.code, 0);
  });
}

test.serial('process ring N=3: a mixed sequence of collectives across processes, ranks staggered, is exact', async (t) => {
  const N = 3;
  const procs = await group(t, N, { segmentBytes: 16 * 1024 });
  const specs: Spec[] = [
    { kind: 'reduceScatter', op: 'mean' }, { kind: 'broadcast', root: 1 }, { kind: 'allGather' }, { kind: 'barrier' },
    { kind: 'allReduce', op: 'sum' }, { kind: 'broadcast', root: 2 }, { kind: 'broadcast', root: 2 }, { kind: 'reduceScatter', op: 'sum' },
    { kind: 'broadcast', root: 0 }, { kind: 'allReduce', op: 'mean' },
  ];
  const calls = specs.map((spec, k) => ({ ...spec, length: [100_003, 7, 0, 1, 65_536, 2][k % 6]!, seed: 100 + k }));
  const res = await Promise.all(procs.map((p, r) => p.request({
    cmd: 'sequence', calls: calls.map((c, k) => ({ ...c, ...((k + r) % 2 === 0 ? { delayMs: 10 * r } : {}) })),
  }, 'sequenced', 60_000)));
  for (const [k, c] of calls.entries()) {
    const inputs = procs.map((_, r) => makeInput(r, c.length, c.seed));
    verify(t, specs[k]!, inputs, res.map((x) => x.results[k]!), `call ${k} ${describeSpec(specs[k]!)} length ${c.length}`);
    for (const x of res) t.is(x.stats[k]?.kind ?? 'barrier', c.kind);
  }
  await stopGroup(procs);
  for (const p of procs) t.is(p.exited?.code, 0);
});

test.serial('process ring N=4: a peer killed mid-reduce makes every other rank reject naming it, within the timeout', async (t) => {
  const timeoutMs = scaled(3000);
  const procs = await group(t, 4, { timeoutMs });
  const errors = procs.map((p) => p.next('reduced', 60_000).then(() => undefined, (e: Error & { event?: { failedRank?: number; failedAddress?: string; message: string } }) => e));
  for (const p of procs) p.send({ cmd: 'reduce', length: 2_000_000, op: 'sum', reps: 10_000, input: 'constant', firstRep: true });
  await Promise.all(procs.map((p) => p.next('first-rep', 30_000))); // every rank is mid-reduce
  const killedAt = performance.now();
  procs[2]!.kill('SIGKILL');
  for (const r of [0, 1, 3]) {
    const err = await errors[r]!;
    const elapsed = performance.now() - killedAt;
    t.truthy(err, `rank ${r} should reject`);
    t.is(err!.event?.failedRank, 2, `rank ${r}: ${err!.message}`);
    t.regex(err!.message, /rank 2 \(127\.0\.0\.1:\d+\)/);
    t.true(elapsed < timeoutMs + scaled(2000), `rank ${r} took ${elapsed} ms`);
  }
  t.truthy(procs[2]!.exited || (await procs[2]!.waitExit(5000)));
});

test.serial('process ring N=3: a stalled (SIGSTOP) peer is named after the timeout', async (t) => {
  const timeoutMs = scaled(1500);
  const procs = await group(t, 3, { timeoutMs });
  const errors = procs.map((p) => p.next('reduced', 60_000).then(() => undefined, (e: Error & { event?: { failedRank?: number } }) => e));
  for (const p of procs) p.send({ cmd: 'reduce', length: 500_000, op: 'sum', reps: 10_000, input: 'constant', firstRep: true });
  await Promise.all(procs.map((p) => p.next('first-rep', 30_000))); // every rank is mid-reduce
  const stoppedAt = performance.now();
  procs[1]!.kill('SIGSTOP');
  for (const r of [0, 2]) {
    const err = await errors[r]!;
    const elapsed = performance.now() - stoppedAt;
    t.truthy(err, `rank ${r} should reject`);
    t.is(err!.event?.failedRank, 1, `rank ${r}: ${err!.message}`);
    t.regex(err!.message, /rank 1 \(127\.0\.0\.1:\d+\)/);
    t.true(elapsed >= timeoutMs * 0.5 && elapsed < timeoutMs + scaled(4000), `rank ${r} took ${elapsed} ms`);
  }
  procs[1]!.kill('SIGCONT');
});

test.serial('process ring N=3: a rank blocked in synchronous work between calls (longer than the timeout) does not break the ring', async (t) => {
  const timeoutMs = scaled(800);
  const procs = await group(t, 3, { timeoutMs });
  const run = async (seed: number) => {
    const res = await Promise.all(procs.map((p) => p.request({ cmd: 'reduce', length: 10_001, op: 'sum', reps: 1, input: 'random', seed, returnResult: true }, 'reduced', 30_000)));
    check(t, procs.map((_, r) => makeInput(r, 10_001, seed)), res.map((r) => r.result!), 'sum', `seed ${seed}`);
  };
  await run(1);
  await procs[1]!.request({ cmd: 'block', ms: 3 * timeoutMs }, 'unblocked', 30_000);
  await run(2);
  t.is(procs.filter((p) => p.exited).length, 0);
});

test.serial('process ring: 1,100 hostile frames at a rank\'s port; it keeps serving a correct all-reduce and never crashes', async (t) => {
  const procs = await group(t, 2, { segmentBytes: 64 * 1024 });
  const url = `ws://127.0.0.1:${procs[0]!.port}`;
  const pre = badFrames(600, 11, 8000);
  const post = badFrames(500, 12, 200_000);
  const results = await inLanes([
    ...pre.map((f) => () => rawSession(url, f, { timeoutMs: 5000 })), // rawSession scales it
    ...post.map((f) => () => rawSession(url, f, { secret: SECRET, name: 'fuzzer', timeoutMs: 5000 })),
  ], 8);
  t.is(results.length, 1100);
  t.deepEqual(results.filter((r) => r.hung), [], 'every hostile connection was closed');
  const allowed = new Set<number>([CloseCode.MALFORMED, CloseCode.UNEXPECTED, CloseCode.VERSION, CloseCode.TOO_BIG, CloseCode.TIMEOUT, CloseCode.CONFLICT, CloseCode.NORMAL]);
  t.deepEqual(results.filter((r) => !allowed.has(r.code)).map((r) => `${r.kind}:${r.code}:${r.reason}`), []);
  t.is(procs[0]!.exited, undefined, 'rank 0 is still running');
  const length = 200_001;
  const res = await Promise.all(procs.map((p) => p.request({ cmd: 'reduce', length, op: 'mean', reps: 2, input: 'random', seed: 5, returnResult: true }, 'reduced', 30_000)));
  check(t, procs.map((_, r) => makeInput(r, length, 5)), res.map((r) => r.result!), 'mean', 'after fuzz');
  t.true(procs[0]!.logs.length >= 1000, `rank 0 logged ${procs[0]!.logs.length} refusals`);
  t.regex(procs[0]!.logs.join('\n'), /auth|refused|closing connection/);
  await stopGroup(procs);
  t.is(procs[0]!.exited?.code, 0);
});
