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
import { CloseCode, encodeMsgpack, PROTOCOL_VERSION } from '../wire/protocol/index.ts';
import { TtcError } from '../core/errors.ts';
import {
  chunkLayout, CollectiveError, referenceAllReduce, referenceReduceScatter, Ring,
  type CollectiveStats, type ReduceOp, type RingOptions,
} from '../collective/index.ts';
import { Star } from '../bench/star.ts';
import { spawnWorker, startGroup, stopGroup, type WorkerProc } from './kit/cluster.ts';
import { makeInput } from './kit/inputs.ts';
import { badFrames, inLanes, rawSession, selfSignedCert } from './kit/netkit.ts';
import { OPENSSL, testIf } from './kit/tools.ts';

const SECRET = 'ring-test-secret-0123456789';

function capture() {
  const lines: string[] = [];
  return { lines, log: (l: string) => { lines.push(l); } };
}

/** Open and connect an in-process ring of N nodes; closed at teardown. */
async function ring(t: ExecutionContext, N: number, opts: Partial<RingOptions> & { secrets?: string[] } = {}): Promise<Ring[]> {
  const nodes = await Promise.all(Array.from({ length: N }, (_, rank) => Ring.open({
    rank, worldSize: N, secret: opts.secrets?.[rank] ?? SECRET, timeoutMs: 5000, connectTimeoutMs: 5000, log: () => {}, ...opts,
  })));
  t.teardown(() => Promise.all(nodes.map((n) => n.close())));
  await Promise.all(nodes.map((n, i) => n.connect(N > 1 ? { host: '127.0.0.1', port: nodes[(i + 1) % N]!.port } : undefined)));
  return nodes;
}

function sameBytes(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Frames received also count the predecessor's heartbeats (every 1000 ms at timeoutMs 5000): at most this many during a call. */
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
  const r0 = await Ring.open({ rank: 0, worldSize: 2, secret: SECRET, log: a.log, connectTimeoutMs: 3000 });
  const r1 = await Ring.open({ rank: 1, worldSize: 2, secret: 'a-different-secret-0123456789', log: b.log, connectTimeoutMs: 3000 });
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

// ---- worker processes ------------------------------------------------------------------------

async function group(t: ExecutionContext, N: number, opts: { timeoutMs?: number; segmentBytes?: number } = {}): Promise<WorkerProc[]> {
  const procs = await startGroup({ kind: 'ring', worldSize: N, secret: SECRET, timeoutMs: opts.timeoutMs ?? 5000, segmentBytes: opts.segmentBytes ?? 64 * 1024, connectTimeoutMs: 20_000, handshakeTimeoutMs: 1000 });
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
  const timeoutMs = 3000;
  const procs = await group(t, 4, { timeoutMs });
  const errors = procs.map((p) => p.next('reduced', 60_000).then(() => undefined, (e: Error & { event?: { failedRank?: number; failedAddress?: string; message: string } }) => e));
  for (const p of procs) p.send({ cmd: 'reduce', length: 2_000_000, op: 'sum', reps: 10_000, input: 'constant' });
  await new Promise((r) => setTimeout(r, 400));
  const killedAt = performance.now();
  procs[2]!.kill('SIGKILL');
  for (const r of [0, 1, 3]) {
    const err = await errors[r]!;
    const elapsed = performance.now() - killedAt;
    t.truthy(err, `rank ${r} should reject`);
    t.is(err!.event?.failedRank, 2, `rank ${r}: ${err!.message}`);
    t.regex(err!.message, /rank 2 \(127\.0\.0\.1:\d+\)/);
    t.true(elapsed < timeoutMs + 2000, `rank ${r} took ${elapsed} ms`);
  }
  t.truthy(procs[2]!.exited || (await procs[2]!.waitExit(5000)));
});

test.serial('process ring N=3: a stalled (SIGSTOP) peer is named after the timeout', async (t) => {
  const timeoutMs = 1500;
  const procs = await group(t, 3, { timeoutMs });
  const errors = procs.map((p) => p.next('reduced', 60_000).then(() => undefined, (e: Error & { event?: { failedRank?: number } }) => e));
  for (const p of procs) p.send({ cmd: 'reduce', length: 500_000, op: 'sum', reps: 10_000, input: 'constant' });
  await new Promise((r) => setTimeout(r, 400));
  const stoppedAt = performance.now();
  procs[1]!.kill('SIGSTOP');
  for (const r of [0, 2]) {
    const err = await errors[r]!;
    const elapsed = performance.now() - stoppedAt;
    t.truthy(err, `rank ${r} should reject`);
    t.is(err!.event?.failedRank, 1, `rank ${r}: ${err!.message}`);
    t.regex(err!.message, /rank 1 \(127\.0\.0\.1:\d+\)/);
    t.true(elapsed >= timeoutMs * 0.5 && elapsed < timeoutMs + 4000, `rank ${r} took ${elapsed} ms`);
  }
  procs[1]!.kill('SIGCONT');
});

test.serial('process ring N=3: a rank blocked in synchronous work between calls (longer than the timeout) does not break the ring', async (t) => {
  const timeoutMs = 800;
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
    ...pre.map((f) => () => rawSession(url, f, { timeoutMs: 5000 })),
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
