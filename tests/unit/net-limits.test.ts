/**
 * wire/net's limits before authentication, on real loopback sockets: connections in the handshake
 * per source address and overall (with eviction), the hello deadline, the pre-auth frame size
 * applied before buffering (both sides), and connect()'s retry of a busy server.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import net from 'node:net';
import WebSocket from 'ws';
import { readFileSync } from 'node:fs';
import { scaled } from '../kit/time-scale.mjs';
import { connect, ConnectError, DEFAULTS, listen, type ListenOptions, type PeerServer } from '../../wire/net/index.ts';
import { sourceOf } from '../../wire/net/server.ts';
import { CloseCode, defineMessage, u32 } from '../../wire/protocol/index.ts';

const SECRET = 'limits-secret-0123456789abcdef';
const Num = defineMessage('test.limits-num', { n: u32() });

function capture() {
  const lines: string[] = [];
  return { lines, log: (l: string) => { lines.push(l); } };
}

/** A bare upgrade from `localAddress` that never sends a frame; resolves once the server answered the upgrade. */
function bare(url: string, localAddress: string): Promise<{ ws: WebSocket; closed: Promise<number> }> {
  const ws = new WebSocket(url, { localAddress, perMessageDeflate: false });
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  ws.on('error', () => {});
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, closed }));
    ws.once('close', (code) => reject(new Error(`closed before open: ${code}`)));
  });
}

async function echo(opts: Partial<ListenOptions<typeof Num>> = {}): Promise<PeerServer<typeof Num>> {
  return listen<typeof Num>({
    secret: SECRET, role: 'coordinator', name: 'limits', messages: [Num],
    onConnection: (conn) => conn.onFrame((m) => conn.send(Num, { n: m.n + 1 })),
    ...opts,
  });
}

const within = <T>(p: Promise<T>, ms: number, what: string) => Promise.race([
  p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms).unref()),
]);

test('net: one address holds at most maxPendingPerSource handshakes; at the overall cap a newcomer evicts the biggest holder\'s oldest', async (t) => {
  const srv = capture();
  const server = await echo({ maxPendingHandshakes: 4, maxPendingPerSource: 3, helloTimeoutMs: 10_000, handshakeTimeoutMs: 20_000, log: srv.log });
  t.teardown(() => server.close());
  const flood = await Promise.all([0, 1, 2].map(() => bare(server.url, '127.0.0.2')));
  // a 4th from the same address is refused at once: its address is at its share
  const fourth = await bare(server.url, '127.0.0.2');
  t.is(await within(fourth.closed, 3000, 'the 4th bare upgrade'), CloseCode.TRY_AGAIN_LATER);
  t.regex(srv.lines.join('\n'), /too many connections in the handshake from 127\.0\.0\.2 \(3\)/);
  // another address fills the last place (4 of 4)
  const other = await bare(server.url, '127.0.0.3');
  // a client from 127.0.0.1 at the cap: 127.0.0.2 holds the most, so its oldest makes room
  const t0 = Date.now();
  const conn = await connect({ url: server.url, secret: SECRET, role: 'worker', name: 'legit', messages: [Num], log: t.log });
  t.true(Date.now() - t0 < 2000, 'admitted at once, not after retries');
  t.is(await within(flood[0]!.closed, 3000, 'the oldest flood connection'), CloseCode.TRY_AGAIN_LATER);
  t.regex(srv.lines.join('\n'), /evicted 127\.0\.0\.2:\d+ from the handshake: 4 connections in the handshake, 3 of them from 127\.0\.0\.2; making room for 127\.0\.0\.1/);
  // authenticated connections do not count: another legitimate client still gets in (evicting again)
  const conn2 = await connect({ url: server.url, secret: SECRET, role: 'worker', name: 'legit2', messages: [Num], log: t.log });
  t.is(other.ws.readyState, WebSocket.OPEN, 'the address holding one place keeps it');
  conn.close();
  conn2.close();
  for (const f of [...flood, other]) f.ws.terminate();
});

test('net: the per-source limit counts an IPv4 address, or an IPv6 /64', (t) => {
  t.is(sourceOf('127.0.0.2'), '127.0.0.2');
  t.is(sourceOf('::ffff:10.1.2.3'), '10.1.2.3');
  t.is(sourceOf('2001:db8::1'), '2001:db8:0:0::/64');
  t.is(sourceOf('2001:0db8:0000:0000:abcd::7'), '2001:db8:0:0::/64', 'another host of the same /64');
  t.is(sourceOf('2001:db8:0:1::1'), '2001:db8:0:1::/64');
  t.is(sourceOf('fe80::1%eth0'), 'fe80:0:0:0::/64');
  t.is(sourceOf('::1'), '0:0:0:0::/64');
});

test('net: a connection that sends no hello is dropped after helloTimeoutMs (4408)', async (t) => {
  const srv = capture();
  const server = await echo({ helloTimeoutMs: 300, handshakeTimeoutMs: 5000, log: srv.log });
  t.teardown(() => server.close());
  const t0 = Date.now();
  const b = await bare(server.url, '127.0.0.1');
  t.is(await within(b.closed, 3000, 'the silent connection'), CloseCode.TIMEOUT);
  t.true(Date.now() - t0 < 2500);
  t.regex(srv.lines.join('\n'), /refused 127\.0\.0\.1:\d+: no hello within 300 ms/);
});

test('net: connect() retries a server that answers 1013 (with backoff) and gets in once there is room; a wrong secret fails at once', async (t) => {
  const srv = capture();
  const server = await echo({ maxPendingHandshakes: 2, maxPendingPerSource: 2, helloTimeoutMs: 10_000, handshakeTimeoutMs: 20_000, log: srv.log });
  t.teardown(() => server.close());
  // two silent connections from our own address take both places: connect() is refused with 1013
  const held = await Promise.all([0, 1].map(() => bare(server.url, '127.0.0.1')));
  const cli = capture();
  const attempt = connect({ url: server.url, secret: SECRET, role: 'worker', name: 'patient', messages: [Num], log: cli.log, retryIntervalMs: 50 });
  const refusals = () => srv.lines.filter((l) => /too many connections in the handshake/.test(l)).length;
  const until = Date.now() + scaled(10_000);
  while (refusals() < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  t.true(refusals() >= 2, srv.lines.join('\n'));
  for (const h of held) h.ws.close();
  const conn = await within(attempt, scaled(10_000), 'connect after the places were freed');
  t.regex(cli.lines.join('\n'), /refused us: 1013 try again later: too many pending handshakes; retrying for up to 30 s/);
  conn.close();
  // a wrong secret is not retried: one attempt, one refusal on the server
  const before = srv.lines.filter((l) => /auth failed/.test(l)).length;
  const t0 = Date.now();
  const err = await t.throwsAsync(connect({ url: server.url, secret: 'not-the-secret-0123456789', role: 'worker', name: 'x', messages: [Num], log: () => {}, retryForMs: 30_000 }), { instanceOf: ConnectError });
  t.is(err!.kind, 'auth');
  t.true(Date.now() - t0 < 2000);
  t.is(srv.lines.filter((l) => /auth failed/.test(l)).length, before + 1);
});

/** A WebSocket frame header for a binary frame of `length` bytes (client frames carry a mask key). */
function frameHeader(length: number, masked: boolean): Buffer {
  const head = Buffer.alloc(10 + (masked ? 4 : 0));
  head[0] = 0x82;
  head[1] = (masked ? 0x80 : 0) | 127;
  head.writeBigUInt64BE(BigInt(length), 2);
  return head; // mask key 0: the payload goes as it is
}

const acceptKey = (key: string) => createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');

test('net: a 1 MiB frame before authentication is refused from its header (1009), not buffered — server side', async (t) => {
  const srv = capture();
  const server = await echo({ log: srv.log });
  t.teardown(() => server.close());
  const sock = net.connect(server.port, '127.0.0.1');
  t.teardown(() => sock.destroy());
  let received = Buffer.alloc(0);
  sock.on('data', (d: Buffer) => { received = Buffer.concat([received, d]); });
  await new Promise((r) => sock.once('connect', r));
  sock.write(`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${Buffer.alloc(16, 1).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  // the header announces 1 MiB; only 16 KiB of it is ever sent
  sock.write(Buffer.concat([frameHeader(1 << 20, true), Buffer.alloc(16 * 1024, 0x90)]));
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  await within(closed, 3000, 'the server closing the connection');
  const body = received.subarray(received.indexOf('\r\n\r\n') + 4);
  t.is(body[0], 0x88, 'a close frame');
  t.is(body.readUInt16BE(2), CloseCode.TOO_BIG);
  t.regex(srv.lines.join('\n'), /frame exceeds the pre-auth limit \(4096 bytes\)/);
});

test('net: a 1 MiB frame before the server proved itself is refused from its header (1009) — client side', async (t) => {
  // a fake server: answers the upgrade, then announces a 1 MiB frame and sends 16 KiB of it
  const fake = net.createServer((sock) => {
    let head = '';
    sock.on('error', () => {});
    sock.on('data', (d: Buffer) => {
      if (head.includes('\r\n\r\n')) return;
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const key = /Sec-WebSocket-Key: (\S+)/i.exec(head)![1]!;
      sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`);
      sock.write(Buffer.concat([frameHeader(1 << 20, false), Buffer.alloc(16 * 1024, 0x90)]));
    });
  });
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => { fake.close(); });
  const port = (fake.address() as net.AddressInfo).port;
  const t0 = Date.now();
  const err = await t.throwsAsync(connect({ url: `ws://127.0.0.1:${port}`, secret: SECRET, role: 'worker', name: 'w', messages: [Num], log: () => {}, handshakeTimeoutMs: 10_000 }), { instanceOf: ConnectError });
  t.is(err!.kind, 'protocol', err!.message);
  t.is(err!.closeCode, CloseCode.TOO_BIG, err!.message);
  t.true(Date.now() - t0 < 3000, 'refused at the header, not after a timeout');
});

test('docs/security.md lists every limit of wire/net/defaults.ts with its value', (t) => {
  const doc = readFileSync(new URL('../../docs/security.md', import.meta.url), 'utf8');
  for (const [key, value] of Object.entries(DEFAULTS)) {
    t.regex(doc, new RegExp(`\\| \`${key}\` \\| ${value}[ |]`), `${key} = ${value}`);
  }
});
