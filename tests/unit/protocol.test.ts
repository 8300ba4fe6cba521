/**
 * Wire protocol: frame codec, message registry, shared-secret auth and the authenticated
 * WebSocket helper (real sockets on 127.0.0.1, no mocks).
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import * as v from 'valibot';
import WebSocket, { WebSocketServer } from 'ws';
import {
  clientProof, loadSecret, MIN_SECRET_BYTES, normalizeSecret, proofsEqual, SecretError, serverProof, tryLoadSecret,
} from '../../wire/auth.ts';
import { connect, ConnectError, listen, type Connection } from '../../wire/net/index.ts';
import {
  bytes, Challenge, CloseCode, decodeFrame, decodeMsgpack, defineMessage, encodeFrame, encodeMsgpack, ErrorMsg, float32Array,
  getMessageDef, Hello, MsgpackError, PROTOCOL_VERSION, ProtocolError, registeredTypes, u32, Welcome,
  type ProtocolErrorKind,
} from '../../wire/protocol/index.ts';
import { badFrames, inLanes, rawSession, rawTcpGarbage, Rng, selfSignedCert, serverFrame, tamperProxy } from '../kit/netkit.ts';
import { OPENSSL, testIf } from '../kit/tools.ts';
import { scaled } from '../kit/time-scale.mjs';

const SECRET = 'test-secret-0123456789abcdef';
const OTHER = 'another-secret-0123456789abcdef';
const packr = new Packr({ moreTypes: true, useRecords: false });

// a message type defined by "another module" (the coordinator protocol does the same)
const Ping = defineMessage('test.ping', { n: u32(), payload: float32Array(1024), tag: v.optional(bytes({ max: 16 })) });

function capture() {
  const lines: string[] = [];
  return { lines, log: (l: string) => { lines.push(l); } };
}

// ---- msgpack codec ---------------------------------------------------------------------------

test('msgpack: round trip and msgpackr interop in both directions', (t) => {
  const value = {
    v: 1, t: 'x', int: 300, neg: -70000, big: 2 ** 40, f: 1.5, nan: NaN, negZero: -0, s: 'héllo ✓', long: 'a'.repeat(1000),
    arr: [1, null, true, false, 'x'], bin: new Uint8Array([1, 2, 3]), f32: new Float32Array([1, 2, 3.5]),
    f64: new Float64Array([1e300, -2]), i16: new Int16Array([-3, 4]), nested: { a: { b: [[], {}] } },
  };
  const mine = encodeMsgpack(value);
  const back = decodeMsgpack(mine) as typeof value;
  t.deepEqual({ ...back, nan: 0, negZero: 0 }, { ...value, nan: 0, negZero: 0, bin: new Uint8Array([1, 2, 3]) });
  t.true(Number.isNaN(back.nan));
  t.true(Object.is(back.negZero, -0));
  t.true(back.f32 instanceof Float32Array);
  const viaMsgpackr = packr.unpack(mine) as typeof value;
  t.deepEqual(Array.from(viaMsgpackr.f32), [1, 2, 3.5]);
  t.is(viaMsgpackr.big, 2 ** 40);
  const fromMsgpackr = decodeMsgpack(packr.pack(value)) as typeof value;
  t.true(fromMsgpackr.f32 instanceof Float32Array);
  t.deepEqual(Array.from(fromMsgpackr.f64), [1e300, -2]);
  t.is(fromMsgpackr.s, 'héllo ✓');
});

test('msgpack: a large Float32Array is aligned on the wire and decoded without a copy', (t) => {
  for (const key of ['d', 'da', 'dat', 'data', 'payload!']) {
    const frame = encodeMsgpack({ v: 1, t: 'chunk', seq: 12345, [key]: new Float32Array(100_000).fill(2) });
    const fresh = Buffer.from(frame); // received frames start at offset 0 of a fresh buffer
    const out = decodeMsgpack(new Uint8Array(fresh.buffer, fresh.byteOffset, fresh.length)) as Record<string, Float32Array>;
    t.is(out[key]!.buffer, fresh.buffer, `view for key ${key}`);
    t.is(out[key]![99_999], 2);
  }
  // unaligned input is copied, not rejected
  const frame = encodeMsgpack({ data: new Float32Array([1, 2, 3]) });
  const shifted = new Uint8Array(frame.length + 1);
  shifted.set(frame, 1);
  t.deepEqual(Array.from((decodeMsgpack(shifted.subarray(1)) as { data: Float32Array }).data), [1, 2, 3]);
});

test('msgpack: rejects everything that is not plain data (never constructs executable or exotic values)', (t) => {
  const exotic = [new Error('boom'), /a+$/, new Set([1]), new Date(0), new Map([[1, 2]]), 10n ** 30n];
  for (const x of exotic) {
    t.throws(() => decodeMsgpack(packr.pack({ x })), { instanceOf: MsgpackError }, String(x));
  }
  t.throws(() => decodeMsgpack(new Packr({ useRecords: true }).pack([{ a: 1 }, { a: 2 }])), { instanceOf: MsgpackError });
  const bad: [string, number[]][] = [
    ['reserved 0xc1', [0xc1]],
    ['non-string key', [0x81, 0x01, 0x02]],
    ['__proto__ key', [0x81, 0xa9, ...Buffer.from('__proto__'), 0x80]],
    ['duplicate key', [0x82, 0xa1, 0x61, 0x01, 0xa1, 0x61, 0x02]],
    ['trailing bytes', [0x01, 0x02]],
    ['array count bomb', [0xdd, 0xff, 0xff, 0xff, 0xff]],
    ['bin length bomb', [0xc6, 0xff, 0xff, 0xff, 0xff]],
    ['invalid utf-8', [0xa2, 0xc3, 0x28]],
    ['unsafe int64', [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]],
    ['typed array bad code', [0xc7, 0x02, 0x74, 0x09, 0x00]],
    ['typed array odd length', [0xc7, 0x04, 0x74, 0x07, 0x00, 0x00, 0x00]],
    ['timestamp ext', [0xd6, 0xff, 0x00, 0x00, 0x00, 0x00]],
    ['empty', []],
    ['deep nesting', [...new Array(100).fill(0x91), 0xc0]],
  ];
  for (const [name, b] of bad) t.throws(() => decodeMsgpack(Uint8Array.from(b)), { instanceOf: MsgpackError }, name);
  // every truncation of a valid frame fails cleanly
  const frame = encodeMsgpack({ v: 1, t: 'x', a: [1, 'two', new Float32Array([3])], b: new Uint8Array(5) });
  for (let i = 0; i < frame.length; i++) t.throws(() => decodeMsgpack(frame.subarray(0, i)), { instanceOf: MsgpackError });
  const decoded = decodeMsgpack(encodeMsgpack({ a: 1 })) as object;
  t.is(Object.getPrototypeOf(decoded), Object.prototype);
});

test('msgpack: fuzzing the decoder with 20,000 random and mutated inputs throws only MsgpackError', (t) => {
  const rng = new Rng(7);
  const seeds = [encodeMsgpack({ v: 1, t: 'chunk', seq: 3, data: new Float32Array(8), s: 'x', arr: [1, [2, { a: null }]] }), packr.pack({ a: new Set([1]), b: 'str' })];
  let errors = 0;
  for (let i = 0; i < 20_000; i++) {
    let input: Uint8Array;
    if (i % 2) input = rng.bytes(rng.int(64));
    else {
      const b = Buffer.from(rng.pick(seeds));
      for (let k = 0; k < 1 + rng.int(3); k++) b[rng.int(b.length)] = rng.u32() & 0xff;
      input = b.subarray(0, rng.int(b.length + 1));
    }
    try { decodeMsgpack(input); } catch (err) { if (!(err instanceof MsgpackError)) t.fail(`threw ${String(err)}`); errors++; }
  }
  t.true(errors > 10_000);
});

// ---- frames and registry ---------------------------------------------------------------------

test('frames: typed encode/decode; unknown, unexpected, invalid, wrong-version and oversized frames are refused', (t) => {
  const payload = new Float32Array([1.5, -2, 3]);
  const frame = encodeFrame(Ping, { n: 7, payload });
  const msg = decodeFrame(frame, [Ping]);
  t.is(msg.t, 'test.ping');
  t.is(msg.v, PROTOCOL_VERSION);
  t.is(msg.n, 7);
  t.deepEqual(Array.from(msg.payload), [1.5, -2, 3]);

  const refuse = (bytes: Uint8Array, kind: ProtocolErrorKind, closeCode: number, allowed = [Ping], opts = {}) => {
    const err = t.throws(() => decodeFrame(bytes, allowed, opts), { instanceOf: ProtocolError });
    t.is(err?.kind, kind);
    t.is(err?.closeCode, closeCode);
    return err;
  };
  refuse(encodeMsgpack({ v: PROTOCOL_VERSION, t: 'no.such.type' }), 'unknown-type', CloseCode.MALFORMED);
  refuse(encodeFrame(Hello, { role: 'peer', name: 'a', nonce: new Uint8Array(32) }), 'unexpected-type', CloseCode.UNEXPECTED);
  const e = refuse(encodeMsgpack({ v: PROTOCOL_VERSION + 1, t: 'test.ping', n: 1, payload }), 'version', CloseCode.VERSION);
  t.regex(e!.message, new RegExp(`protocol version ${PROTOCOL_VERSION + 1} not supported \\(this side speaks ${PROTOCOL_VERSION}\\)`));
  refuse(encodeMsgpack({ t: 'test.ping', n: 1, payload }), 'version', CloseCode.VERSION);
  // typed arrays must be binary: a list of numbers is invalid
  refuse(encodeMsgpack({ v: PROTOCOL_VERSION, t: 'test.ping', n: 1, payload: [1, 2, 3] }), 'invalid', CloseCode.MALFORMED);
  refuse(encodeMsgpack({ v: PROTOCOL_VERSION, t: 'test.ping', n: -1, payload }), 'invalid', CloseCode.MALFORMED);
  refuse(encodeMsgpack({ v: PROTOCOL_VERSION, t: 'test.ping', n: 1, payload, extra: true }), 'invalid', CloseCode.MALFORMED);
  refuse(encodeMsgpack({ v: PROTOCOL_VERSION, t: 'test.ping', n: 1, payload: new Float32Array(1025) }), 'invalid', CloseCode.MALFORMED);
  refuse(encodeMsgpack([1, 2]), 'malformed', CloseCode.MALFORMED);
  refuse(Uint8Array.from([0x92]), 'malformed', CloseCode.MALFORMED);
  refuse(frame, 'too-large', CloseCode.TOO_BIG, [Ping], { maxBytes: frame.length - 1 });
  t.throws(() => encodeFrame(Ping, { n: 1.5, payload }), { instanceOf: ProtocolError });
});

test('registry: other modules add types; names are unique and v/t reserved', (t) => {
  t.is(getMessageDef('test.ping'), Ping);
  t.true(registeredTypes().includes('hello'));
  t.throws(() => defineMessage('test.ping', {}), { message: /already defined/ });
  t.throws(() => defineMessage('test.bad', { v: v.number() }), { message: /reserved/ });
  t.throws(() => defineMessage('Bad Name', {}), { message: /invalid type name/ });
});

// ---- secrets and proofs ----------------------------------------------------------------------

test('auth: secret from TTC_SECRET or TTC_SECRET_FILE; missing, empty, short or ambiguous secrets are refused', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ttc-secret-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'secret');
  writeFileSync(file, `${SECRET}\n`); // k8s Secrets often end with a newline
  t.deepEqual(loadSecret({ TTC_SECRET: SECRET }), Buffer.from(SECRET));
  t.deepEqual(loadSecret({ TTC_SECRET_FILE: file }), Buffer.from(SECRET));
  t.is(tryLoadSecret({}), undefined);
  t.throws(() => loadSecret({}), { instanceOf: SecretError, message: /no shared secret: set TTC_SECRET or TTC_SECRET_FILE/ });
  t.throws(() => loadSecret({ TTC_SECRET: 'short' }), { instanceOf: SecretError, message: new RegExp(`at least ${MIN_SECRET_BYTES}`) });
  t.throws(() => loadSecret({ TTC_SECRET_FILE: join(dir, 'missing') }), { instanceOf: SecretError, message: /cannot read it \(ENOENT\)/ });
  t.throws(() => loadSecret({ TTC_SECRET: SECRET, TTC_SECRET_FILE: file }), { instanceOf: SecretError, message: /set only one/ });
  writeFileSync(file, '\n');
  t.throws(() => loadSecret({ TTC_SECRET_FILE: file }), { instanceOf: SecretError, message: /empty/ });
});

test('auth: proofs depend on secret, nonces, identity and direction; comparison is length-checked', (t) => {
  const k = normalizeSecret(SECRET);
  const tr = { clientNonce: Buffer.alloc(32, 1), serverNonce: Buffer.alloc(32, 2), clientRole: 'peer', clientName: 'a' };
  const p = clientProof(k, tr);
  t.is(p.length, 32);
  t.true(proofsEqual(p, clientProof(normalizeSecret(SECRET), tr)));
  t.false(proofsEqual(p, clientProof(normalizeSecret(OTHER), tr)));
  t.false(proofsEqual(p, clientProof(k, { ...tr, serverNonce: Buffer.alloc(32, 3) })));
  t.false(proofsEqual(p, clientProof(k, { ...tr, clientName: 'b' })));
  t.false(proofsEqual(p, serverProof(k, tr, 'peer', 'a'))); // no reflection
  t.false(proofsEqual(p, p.subarray(0, 31)));
});

// ---- authenticated connections ---------------------------------------------------------------

async function echoServer(t: ExecutionContext, opts: { secret?: string; log?: (l: string) => void; maxPayload?: number; handshakeTimeoutMs?: number; tls?: { cert: string; key: string } } = {}) {
  const received: number[] = [];
  const server = await listen({
    secret: opts.secret ?? SECRET, role: 'coordinator', name: 'test-coordinator', messages: [Ping],
    ...(opts.log ? { log: opts.log } : {}), ...(opts.maxPayload ? { maxPayload: opts.maxPayload } : {}),
    ...(opts.handshakeTimeoutMs ? { handshakeTimeoutMs: opts.handshakeTimeoutMs } : {}), ...(opts.tls ? { tls: opts.tls } : {}),
    onConnection: (conn) => conn.onFrame((m) => { received.push(m.n); conn.send(Ping, { n: m.n + 1, payload: m.payload }); }),
  });
  t.teardown(() => server.close());
  return { server, received };
}

function roundTrip(conn: Connection<typeof Ping>, n: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no reply')), scaled(5000));
    conn.onFrame((m) => { clearTimeout(timer); resolve(m.n); });
    conn.send(Ping, { n, payload: new Float32Array([n]) });
  });
}

test('net: mutual HMAC handshake, then validated frames both ways', async (t) => {
  const { server, received } = await echoServer(t);
  const conn = await connect({ url: server.url, secret: SECRET, role: 'worker', name: 'w0', messages: [Ping], peerLabel: 'coordinator', log: t.log });
  t.teardown(() => conn.terminate());
  t.is(conn.peer.name, 'test-coordinator');
  t.is(conn.peer.role, 'coordinator');
  t.is(await roundTrip(conn, 41), 42);
  t.deepEqual(received, [41]);
  t.is(server.connections.size, 1);
  conn.close();
  await server.close();
});

test('net: wrong secret is refused, with the reason logged on both sides', async (t) => {
  const srv = capture();
  const cli = capture();
  const { server } = await echoServer(t, { log: srv.log });
  const err = await t.throwsAsync(connect({ url: server.url, secret: OTHER, role: 'worker', name: 'w1', messages: [Ping], peerLabel: 'coordinator', log: cli.log }), { instanceOf: ConnectError });
  t.is(err?.kind, 'auth');
  t.is(err?.closeCode, CloseCode.AUTH_FAILED);
  t.is(err?.code, 'TTC_ERR_CONNECT_AUTH');
  t.regex(cli.lines.join('\n'), /coordinator at ws:\/\/127\.0\.0\.1:\d+ refused us: authentication failed — check TTC_SECRET/);
  t.regex(srv.lines.join('\n'), /auth failed: wrong secret from 127\.0\.0\.1:\d+ \(role=worker, name="w1"\)/);
  t.is(server.connections.size, 0);
  await server.close();
});

test('net: a server that does not know the secret is detected by the client (mutual auth)', async (t) => {
  // an impostor that accepts any client proof and answers with a proof made with another secret
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  t.teardown(() => { for (const c of wss.clients) c.terminate(); wss.close(); });
  const serverLog: string[] = [];
  wss.on('connection', (ws) => {
    let hello: { nonce: Uint8Array; role: string; name: string } | undefined;
    const serverNonce = Buffer.alloc(32, 9);
    ws.on('message', (data: Buffer) => {
      if (!hello) {
        hello = decodeFrame(data, [Hello]);
        ws.send(encodeFrame(Challenge, { nonce: serverNonce }));
        return;
      }
      const tr = { clientNonce: hello.nonce, serverNonce, clientRole: hello.role, clientName: hello.name };
      ws.send(encodeFrame(Welcome, { proof: serverProof(normalizeSecret(OTHER), tr, 'coordinator', 'impostor'), role: 'coordinator', name: 'impostor' }));
    });
    ws.on('close', (code, reason) => serverLog.push(`closed by client: ${code} ${reason.toString()}`));
  });
  const cli = capture();
  const port = (wss.address() as { port: number }).port;
  const err = await t.throwsAsync(connect({ url: `ws://127.0.0.1:${port}`, secret: SECRET, role: 'worker', name: 'w2', messages: [Ping], peerLabel: 'coordinator', log: cli.log }), { instanceOf: ConnectError });
  t.is(err?.kind, 'auth');
  t.regex(cli.lines.join('\n'), /coordinator at ws:\/\/127\.0\.0\.1:\d+ failed to prove it knows the shared secret: authentication failed — check TTC_SECRET/);
  for (let i = 0; i < scaled(100) && serverLog.length === 0; i++) await new Promise((r) => setTimeout(r, 20)); // ≤ 2 s × the load scale
  t.regex(serverLog.join('\n'), /closed by client: 4401/);
  await new Promise((r) => wss.close(r));
});

test('net: missing secret refuses to connect or listen before any traffic', async (t) => {
  await t.throwsAsync(connect({ url: 'ws://127.0.0.1:9', secret: undefined as unknown as string, role: 'worker', name: 'x', messages: [] }), { instanceOf: SecretError, message: /no shared secret/ });
  await t.throwsAsync(listen({ secret: '', role: 'x', name: 'x', messages: [], onConnection: () => {} }), { instanceOf: SecretError });
});

test('net: wrong protocol version, text frames, oversized frames, silence and post-auth garbage close with reasons', async (t) => {
  const srv = capture();
  const { server } = await echoServer(t, { log: srv.log, maxPayload: 64 * 1024, handshakeTimeoutMs: 400 });
  const hello2 = { kind: 'version', bytes: encodeMsgpack({ v: PROTOCOL_VERSION + 1, t: 'hello', role: 'worker', name: 'future', nonce: new Uint8Array(32) }) };
  const r1 = await rawSession(server.url, hello2);
  t.is(r1.code, CloseCode.VERSION);
  t.regex(r1.reason, new RegExp(`protocol version ${PROTOCOL_VERSION + 1} not supported \\(this side speaks ${PROTOCOL_VERSION}\\)`));
  t.regex(srv.lines.join('\n'), new RegExp(`refused 127\\.0\\.0\\.1:\\d+ \\(expected "hello"\\): protocol version ${PROTOCOL_VERSION + 1} not supported`));

  t.is((await rawSession(server.url, { kind: 'text', text: '{"v":1}' })).code, CloseCode.MALFORMED);
  t.is((await rawSession(server.url, { kind: 'big', bytes: Buffer.alloc(8000) })).code, CloseCode.TOO_BIG); // > 4096 before auth
  t.is((await rawSession(server.url, { kind: 'huge', bytes: Buffer.alloc(70_000) })).code, CloseCode.TOO_BIG); // > maxPayload (ws)
  // authenticated, then garbage / a type this endpoint does not accept / a frame over maxPayload
  const garbage = await rawSession(server.url, { kind: 'garbage', bytes: Buffer.from([0xc1]) }, { secret: SECRET });
  t.is(garbage.code, CloseCode.MALFORMED);
  const wrongType = await rawSession(server.url, { kind: 'type', bytes: encodeFrame(Hello, { role: 'x', name: 'x', nonce: new Uint8Array(32) }) }, { secret: SECRET });
  t.is(wrongType.code, CloseCode.UNEXPECTED);
  const tooBig = await rawSession(server.url, { kind: 'huge', bytes: Buffer.alloc(70_000) }, { secret: SECRET });
  t.is(tooBig.code, CloseCode.TOO_BIG);
  t.regex(srv.lines.join('\n'), /frame exceeds maxPayload \(65536 bytes\)/);

  // a client that connects and says nothing is dropped after the handshake timeout
  const silent = await new Promise<number>((resolve) => {
    const ws = new WebSocket(server.url);
    ws.on('error', () => {});
    ws.on('close', (code) => resolve(code));
  });
  t.is(silent, CloseCode.TIMEOUT);
  t.regex(srv.lines.join('\n'), /handshake not completed within 400 ms/);
  // still serving
  const conn = await connect({ url: server.url, secret: SECRET, role: 'worker', name: 'ok', messages: [Ping] });
  t.is(await roundTrip(conn, 1), 2);
  conn.close();
  await server.close();
});

test('net: 1,200 bad frames (before and after auth) and 100 non-WebSocket connections are refused; the server keeps serving', async (t) => {
  const srv = capture();
  // a bit flip inside a nonce still makes a valid hello: such sessions end at the handshake timeout
  const { server, received } = await echoServer(t, { log: srv.log, maxPayload: 128 * 1024, handshakeTimeoutMs: 500 });
  const pre = badFrames(700, 1, 10_000);
  const post = badFrames(500, 2, 200_000);
  const results = await inLanes([
    ...pre.map((f) => () => rawSession(server.url, f)),
    ...post.map((f) => () => rawSession(server.url, f, { secret: SECRET, name: 'fuzzer' })),
  ], 8);
  t.is(results.length, 1200);
  const hung = results.filter((r) => r.hung);
  t.deepEqual(hung, [], 'every bad frame got the connection closed');
  // 1000: an authenticated peer sent a valid `error` frame (it announced it is closing)
  const allowed = new Set<number>([CloseCode.MALFORMED, CloseCode.UNEXPECTED, CloseCode.VERSION, CloseCode.TOO_BIG, CloseCode.TIMEOUT, CloseCode.NORMAL]);
  const odd = results.filter((r) => !allowed.has(r.code));
  t.deepEqual(odd.map((r) => `${r.kind}:${r.code}`), []);
  t.deepEqual(received, [], 'no bad frame reached the application');
  t.true(srv.lines.length >= 1200, 'each refusal is logged');
  // and 100 connections that do not even speak HTTP/WebSocket
  const rng = new Rng(3);
  const port = server.port;
  const garbage = await inLanes(Array.from({ length: 100 }, () => () => rawTcpGarbage(port, rng)), 8);
  t.deepEqual(garbage.filter((g) => !g.closed), [], 'every garbage TCP connection was closed by the server');
  const conn = await connect({ url: server.url, secret: SECRET, role: 'worker', name: 'after-fuzz', messages: [Ping] });
  t.is(await roundTrip(conn, 9), 10);
  conn.close();
  await server.close();
});

testIf(OPENSSL, 'openssl not installed')('net: wss:// with a certificate; the client verifies it against the given CA', async (t) => {
  const tls = selfSignedCert();
  if (!tls) throw new Error('openssl could not make a certificate');
  t.teardown(() => rmSync(tls.dir, { recursive: true, force: true }));
  const srv = capture();
  const { server } = await echoServer(t, { tls, log: srv.log });
  t.true(server.url.startsWith('wss://'));
  const conn = await connect({ url: server.url, secret: SECRET, role: 'worker', name: 'tls', messages: [Ping], tls: { ca: tls.cert } });
  t.is(await roundTrip(conn, 5), 6);
  conn.close();
  // without the CA the self-signed certificate is rejected
  const err = await t.throwsAsync(connect({ url: server.url, secret: SECRET, role: 'worker', name: 'tls2', messages: [Ping], log: () => {} }), { instanceOf: ConnectError });
  t.regex(err!.message, /certificate/i);
  await server.close();
});

test('net: a peer error frame is logged and surfaces as the close reason', async (t) => {
  const srv = capture();
  const server = await listen({
    secret: SECRET, role: 'coordinator', name: 'c', messages: [Ping], log: srv.log,
    onConnection: (conn) => conn.onFrame(() => conn.fail(CloseCode.CONFLICT, 'rank 3 is already taken')),
  });
  t.teardown(() => server.close());
  const cli = capture();
  const conn = await connect({ url: server.url, secret: SECRET, role: 'worker', name: 'w', messages: [Ping], peerLabel: 'coordinator', log: cli.log });
  const closed = new Promise<{ code: number; reason: string }>((r) => conn.onClose(r));
  conn.send(Ping, { n: 1, payload: new Float32Array(0) });
  const info = await closed;
  t.is(info.code, CloseCode.CONFLICT);
  t.is(info.reason, 'rank 3 is already taken');
  t.regex(cli.lines.join('\n'), /coordinator "c" .* reports an error and closes: rank 3 is already taken \(4409\)/);
  t.is(ErrorMsg.type, 'error');
  await server.close();
});

test('net: without TLS every frame carries a MAC: a byte flipped, a frame injected or a frame replayed in transit closes the link (4402), logged', async (t) => {
  const srv = capture();
  const { server } = await echoServer(t, { log: srv.log });
  const proxy = await tamperProxy(server.port);
  t.teardown(() => proxy.close());
  const marker = new Float32Array(64).fill(1234.5);
  const markerBytes = Buffer.from(marker.buffer, 0, 8);
  const cases: [string, () => void][] = [
    ['flip', () => proxy.arm({ flip: markerBytes })],
    ['inject', () => proxy.arm({ inject: serverFrame(Buffer.from(encodeFrame(Ping, { n: 7, payload: new Float32Array(1) }))) })],
    ['replay', () => proxy.arm({ replay: true })],
  ];
  for (const [what, meddle] of cases) {
    const cli = capture();
    const conn = await connect({ url: `ws://127.0.0.1:${proxy.port}`, secret: SECRET, role: 'worker', name: what, messages: [Ping], peerLabel: 'coordinator', log: cli.log });
    t.is(await roundTrip(conn, 1), 2, `${what}: an untouched frame passes`);
    const got: number[] = [];
    const closed = new Promise<number>((resolve) => conn.onClose((info) => resolve(info.code)));
    conn.onFrame((m) => got.push(m.n));
    meddle();
    conn.send(Ping, { n: 10, payload: marker });
    const code = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 5000))]);
    t.is(code, CloseCode.INTEGRITY, `${what}: closed for integrity (frames delivered: ${got.join(',')})`);
    t.false(got.includes(7), `${what}: the injected frame never reached the application`);
    t.true(got.length <= 1 && (got.length === 0 || what === 'replay'), `${what}: delivered ${got.join(',')}`);
    t.regex(cli.lines.join('\n'), /closing connection with coordinator "test-coordinator" \(127\.0\.0\.1:\d+\): frame integrity check failed on message #\d+ \(\d+ bytes\): altered, injected, replayed or dropped in transit/);
    conn.terminate();
  }
  t.regex(srv.lines.join('\n'), /reports an error and closes: frame integrity check failed/);
});
