/**
 * A real worker process (`ttc worker`) driven by a hand-written coordinator over a real
 * authenticated socket: its lifecycle (idle → assigned → ring up → loaded) holds, every message
 * its state does not accept is refused at once with a stable code (not ignored until a timeout),
 * a bad assignment is refused naming the config problem, and after each refusal it goes on
 * working: it loads a state, trains a step, evaluates, resets and stops.
 */
import test from 'ava';
import crypto from 'node:crypto';
import { M } from '../protocol/index.ts';
import { listen, type Connection } from '../wire/net/index.ts';
import type { Message } from '../wire/protocol/index.ts';
import { initialWeights } from '../ml/model/weights.ts';
import { paramLayout } from '../ml/model/spec.ts';
import { spawnTtc } from './kit/procs.ts';
import { TEST_CACHE_DIR, TINY_MODEL } from './kit/helpers.ts';
import { scaled } from './kit/time-scale.mjs';

type FromWorker = Message<(typeof M.fromWorker)[number]>;

/** The frames a worker sends, awaited by type. */
class Inbox {
  private readonly frames: FromWorker[] = [];
  private waiter: (() => void) | undefined;
  push(m: FromWorker): void {
    this.frames.push(m);
    this.waiter?.();
  }
  async next<T extends FromWorker['t']>(type: T, timeoutMs = scaled(120_000)): Promise<Extract<FromWorker, { t: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex((m) => m.t === type || m.t === 'worker.refused');
      if (i >= 0) {
        const m = this.frames.splice(i, 1)[0]!;
        if (m.t !== type) throw new Error(`expected ${type}, got ${JSON.stringify(m)}`);
        return m as Extract<FromWorker, { t: T }>;
      }
      if (Date.now() > deadline) throw new Error(`no ${type} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
}

const config = JSON.stringify({ cacheDir: TEST_CACHE_DIR, backend: 'cpu', threads: 1, model: TINY_MODEL, train: { batchSize: 4 }, data: { maxValidationSequences: 8 } });

test('a worker refuses messages its state does not accept (TTC_ERR_UNEXPECTED_MESSAGE, TTC_ERR_STALE_FORMATION, a bad config) and goes on working', async (t) => {
  const secret = crypto.randomBytes(24).toString('base64');
  const inbox = new Inbox();
  let conn: Connection<(typeof M.fromWorker)[number]> | undefined;
  let connected: () => void = () => {};
  const server = await listen({
    host: '127.0.0.1',
    port: 0,
    secret,
    role: 'coordinator',
    name: 'test',
    messages: M.fromWorker,
    log: () => {},
    onConnection: (c) => {
      conn = c;
      c.onFrame((m) => inbox.push(m as FromWorker));
      connected();
    },
  });
  const worker = spawnTtc(['worker', '--coordinator', server.url, '--name', 'w0', '--retry-seconds', String(scaled(30))], { TTC_SECRET: secret, TTC_SECRET_FILE: undefined });
  t.teardown(async () => {
    worker.kill();
    await server.close();
  });
  await inbox.next('coord.register');
  if (!conn) await new Promise<void>((r) => (connected = r));
  const c = conn!;
  const refused = async (what: string) => {
    const r = await inbox.next('worker.refused');
    t.log(`${what}: ${r.code} ${r.reason}`);
    return r;
  };

  // Idle: a training step is not accepted before an assignment.
  c.send(M.Step, { formation: 1, step: 0, lr: 1e-3, epoch: 0, offset: 0 });
  let r = await refused('step when idle');
  t.is(r.code, 'TTC_ERR_UNEXPECTED_MESSAGE');
  t.is(r.refused, 'coord.step');
  t.regex(r.reason, /coord\.step is not accepted in state "idle"/);

  // A bad assignment is refused with the config's problem named; the worker stays idle.
  c.send(M.Assign, { formation: 1, rank: 0, worldSize: 1, ringId: 't/f1', config: JSON.stringify({ model: { heads: 0 } }), task: { kind: 'mlm' } });
  r = await refused('bad config');
  t.is(r.code, 'TTC_ERR_CONFIG');
  t.is(r.formation, 1);
  t.regex(r.reason, /model\.heads: expected a positive integer, got 0/);

  // A good one: assigned, with its ring listener.
  c.send(M.Assign, { formation: 2, rank: 0, worldSize: 1, ringId: 't/f2', config, task: { kind: 'mlm' } });
  const ready = await inbox.next('coord.ring-ready');
  t.is(ready.formation, 2);
  t.true(ready.trainCount > 0);
  c.send(M.Load, { formation: 2, adamT: 0, total: 1, moments: false, mask: false });
  r = await refused('load before the ring is up');
  t.is(r.code, 'TTC_ERR_UNEXPECTED_MESSAGE');
  t.regex(r.reason, /state "assigned"/);
  c.send(M.RingConnect, { formation: 2, host: ready.host, port: ready.port });
  t.is((await inbox.next('coord.ring-up')).formation, 2);

  // Ring up: the state arrives (rank 0 gets it as blobs) and is loaded.
  const layout = paramLayout(TINY_MODEL);
  c.send(M.Blob, { stream: 'load/9', name: 'weights', offset: 0, total: 1, data: new Float32Array(1) });
  r = await refused('a blob of another formation');
  t.is(r.code, 'TTC_ERR_UNEXPECTED_MESSAGE');
  c.send(M.Blob, { stream: 'load/2', name: 'weights', offset: 0, total: layout.total, data: initialWeights(layout, 5, 0.02) });
  c.send(M.Load, { formation: 2, adamT: 0, total: layout.total, moments: false, mask: false });
  t.is((await inbox.next('coord.loaded')).formation, 2);

  // Loaded: a message for another formation is stale; the right one trains.
  c.send(M.Step, { formation: 3, step: 0, lr: 1e-3, epoch: 0, offset: 0 });
  r = await refused('stale step');
  t.is(r.code, 'TTC_ERR_STALE_FORMATION');
  c.send(M.Step, { formation: 2, step: 0, lr: 1e-3, epoch: 0, offset: 0 });
  const done = await inbox.next('coord.step-done');
  t.true(Number.isFinite(done.loss) && done.loss > 0);
  c.send(M.EvalRequest, { formation: 2, step: 1 });
  const ev = await inbox.next('coord.eval-done');
  t.true(Number.isFinite(ev.loss!));
  t.true(Number.isFinite(ev.unigramEntropy!));

  // Reset: back to idle, where a step is refused again; then stop ends the process with status 0.
  c.send(M.Reset, { formation: 2, reason: 'test done' });
  c.send(M.HashRequest, { formation: 2, step: 1 });
  r = await refused('hash after reset');
  t.regex(r.reason, /state "idle"/);
  c.send(M.Stop, { reason: 'test over', ok: true });
  t.is(await worker.exited, 0);
  t.regex(worker.lines.join('\n'), /refusing coord\.step: coord\.step is not accepted in state "idle" .*\(TTC_ERR_UNEXPECTED_MESSAGE\)/);
});
