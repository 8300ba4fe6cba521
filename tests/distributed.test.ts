/**
 * Integration tests of distributed training with real processes and real sockets on loopback:
 * equivalence with one big-batch worker, a full local run, a worker killed with SIGKILL, a
 * coordinator killed and restarted, a wrong secret.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { childProcesses, cmdline, descendants, spawnTtc, waitGone, type Proc } from './kit/procs.ts';
import { DIST_TIMEOUTS, tempDir, TINY_MODEL, writeConfig } from './kit/helpers.ts';
import { readMetrics } from '../core/run/metrics.ts';
import { checkpointsDir, listCheckpointDirs, loadCheckpoint } from '../ml/checkpoint/checkpoint.ts';
import { paramLayout } from '../ml/model/spec.ts';
import { mlmStepFlops } from '../ml/flops.ts';
import { numMaskedPerSeq } from '../ml/data/masking.ts';
import { scaled } from './kit/time-scale.mjs';
import { httpReadToken, normalizeSecret } from '../wire/auth.ts';

const SECRET = crypto.randomBytes(24).toString('base64');
const env = { TTC_SECRET: SECRET, TTC_SECRET_FILE: undefined };

function runDirOf(p: Proc): string {
  const line = p.lines.find((l) => /results: (\S+)\//.test(l));
  if (!line) throw new Error(`no results line in:\n${p.lines.slice(-20).join('\n')}`);
  return line.match(/results: (\S+)\//)![1];
}

function finalWeights(runDir: string): Float32Array {
  const dirs = listCheckpointDirs(checkpointsDir(runDir));
  return loadCheckpoint(dirs.at(-1)!, paramLayout(TINY_MODEL)).weights;
}

async function startCoordinator(args: string[]): Promise<{ proc: Proc; url: string }> {
  const proc = spawnTtc(['coordinator', '--port', '0', ...args], env);
  const url = (await proc.waitFor(/TTC_COORDINATOR_URL=(\S+)/))[1];
  return { proc, url };
}

const startWorker = (url: string, name: string, extraEnv: Record<string, string | undefined> = {}) =>
  spawnTtc(['worker', '--coordinator', url, '--name', name, '--retry-seconds', String(scaled(60))], { ...env, ...extraEnv });

for (const n of [2, 3]) {
  test(`${n} workers × batch b end bit-identical and equal 1 worker × batch ${n}·b after k steps`, async (t) => {
    const dir = tempDir(`equiv${n}`);
    const cfg = writeConfig(dir);
    const dist = spawnTtc(['local', '--workers', String(n), '--config', cfg], env);
    const single = spawnTtc(['train', '--config', cfg, '--set', `train.batchSize=${4 * n}`], env);
    t.is(await dist.exited, 0, dist.lines.slice(-20).join('\n'));
    t.is(await single.exited, 0, single.lines.slice(-20).join('\n'));
    // hashEvery = 1: the coordinator compared every worker's parameter hash after every step.
    t.regex(dist.lines.join('\n'), /completed its budget: 6\/6 steps/);
    const a = finalWeights(runDirOf(dist));
    const b = finalWeights(runDirOf(single));
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    t.true(maxDiff < 1e-4, `max |Δw| = ${maxDiff}`);
    const la = readMetrics(path.join(runDirOf(dist), 'metrics.jsonl')).filter((r) => r.trainLoss !== undefined);
    const lb = readMetrics(path.join(runDirOf(single), 'metrics.jsonl')).filter((r) => r.trainLoss !== undefined);
    t.deepEqual(la.map((r) => r.step), lb.map((r) => r.step));
    for (let i = 0; i < la.length; i++) t.true(Math.abs(la[i].trainLoss! - lb[i].trainLoss!) < 1e-4, `loss at step ${la[i].step}`);
  });
}

/**
 * A coordinator and 3 workers (w0–w2) on a FLOP budget of `steps3` 3-worker steps, checkpointing
 * every 4 steps, trained until the checkpoint at step 8 is written: the moment a worker is taken away.
 */
async function threeWorkersPastCheckpoint(name: string, steps3: number) {
  const perStep1 = mlmStepFlops(TINY_MODEL, 4, numMaskedPerSeq(TINY_MODEL.seqLen)).training;
  const budget = perStep1 * 3 * steps3;
  const cfg = writeConfig(tempDir(name), {
    budget: { kind: 'flops', flops: budget },
    train: { batchSize: 4, evalEvery: 10, checkpointEvery: 4 },
    dist: { minWorkers: 2, initialWorkers: 3, hashEvery: 5, ...DIST_TIMEOUTS },
  });
  const { proc: coord, url } = await startCoordinator(['--config', cfg]);
  const workers = [0, 1, 2].map((i) => startWorker(url, `w${i}`));
  await coord.waitFor(/ring of 3 up/);
  await coord.waitFor(/checkpoint: .*step-00000008/);
  return { coord, workers, budget, perStep1 };
}

test('kill -9 of one of 3 workers mid-run: the ring re-forms and the run completes its FLOP budget', async (t) => {
  // Let it train a few steps past a checkpoint, then SIGKILL worker w1.
  const { coord, workers, budget, perStep1 } = await threeWorkersPastCheckpoint('kill', 40.5);
  workers[1].kill('SIGKILL');
  t.is(await coord.exited, 0, coord.lines.slice(-30).join('\n'));
  const out = coord.lines.join('\n');
  // Named either way it is noticed first: its coordinator connection closing, or a ring neighbour's report.
  t.regex(out, /worker "w1" \(rank \d, [^)]+\) disconnected during|ring formation 1 failed: .*rank \d \(127\.0\.0\.1:\d+\) link lost/);
  t.regex(out, /dropping worker "w1"/);
  const restart = Number(out.match(/re-forming the ring from the checkpoint at step (\d+)/)![1]);
  t.true(restart >= 8, `restarted from step ${restart}: at most one checkpoint interval lost`);
  t.regex(out, /ring of 2 up/);
  const runDir = runDirOf(coord);
  const summary = JSON.parse(fs.readFileSync(path.join(runDir, 'summary.json'), 'utf8'));
  t.true(summary.completed);
  t.is(summary.workers, 2);
  t.true(summary.flopsUsed <= budget);
  t.true(budget - summary.flopsUsed < perStep1 * 2, 'short of the budget by less than one (2-worker) step');
  const steps = readMetrics(path.join(runDir, 'metrics.jsonl')).map((r) => r.step);
  t.deepEqual(steps, [...new Set(steps)].sort((a, b) => a - b), 'metrics rows unique and ordered (no step counted twice)');
  t.is(steps.at(-1), summary.steps);
  const rows = readMetrics(path.join(runDir, 'metrics.jsonl'));
  t.is(rows.at(-1)!.flops, summary.flopsUsed);
  t.is(rows.at(-1)!.lr, 0);
  for (const w of [workers[0], workers[2]]) t.is(await w.exited, 0);
});

test('SIGTERM to one of 3 workers mid-run (a deleted pod): it leaves at once with status 0, the ring re-forms and the run completes', async (t) => {
  const { coord, workers } = await threeWorkersPastCheckpoint('sigterm-worker', 30.5);
  const sentAt = Date.now();
  workers[1].kill('SIGTERM');
  // As process 1 of a container it would otherwise ignore the signal until its grace period ends.
  t.is(await workers[1].exited, 0, workers[1].lines.slice(-10).join('\n'));
  const leftMs = Date.now() - sentAt;
  t.true(leftMs < scaled(5000) + 2000, `left ${leftMs} ms after SIGTERM`);
  t.regex(workers[1].lines.join('\n'), /SIGTERM: leaving the ring and the coordinator/);
  t.is(await coord.exited, 0, coord.lines.slice(-30).join('\n'));
  const out = coord.lines.join('\n');
  t.regex(out, /dropping worker "w1"/);
  t.regex(out, /ring of 2 up/);
  const summary = JSON.parse(fs.readFileSync(path.join(runDirOf(coord), 'summary.json'), 'utf8'));
  t.true(summary.completed);
  t.is(summary.workers, 2);
  for (const w of [workers[0], workers[2]]) t.is(await w.exited, 0);
});

test('a coordinator killed with SIGKILL and restarted with --resume continues the run to its budget', async (t) => {
  const dir = tempDir('coordkill');
  const cfg = writeConfig(dir, { budget: { kind: 'steps', steps: 24 }, train: { batchSize: 4, evalEvery: 8, checkpointEvery: 4 }, dist: { minWorkers: 2, hashEvery: 4 } });
  const first = await startCoordinator(['--config', cfg]);
  const workers = [0, 1].map((i) => startWorker(first.url, `w${i}`));
  await first.proc.waitFor(/checkpoint: .*step-00000008/);
  first.proc.kill('SIGKILL');
  await first.proc.exited;
  const runDir = path.dirname(path.dirname((await first.proc.waitFor(/checkpoint: (\S+)/))[1]));
  // Same port: the workers keep retrying the address they know.
  const port = new URL(first.url).port;
  const second = spawnTtc(['coordinator', '--resume', runDir, '--port', port], env);
  t.is(await second.exited, 0, second.lines.slice(-30).join('\n'));
  const out = second.lines.join('\n');
  t.regex(out, /resuming run .* from its checkpoint at step (8|12)/);
  t.regex(out, /completed its budget: 24\/24 steps/);
  const steps = readMetrics(path.join(runDir, 'metrics.jsonl')).map((r) => r.step);
  t.deepEqual(steps, [...new Set(steps)].sort((a, b) => a - b));
  t.is(steps.at(-1), 24);
  for (const w of workers) t.is(await w.exited, 0);
});

test('the failures a run survived outlive its coordinator: after a SIGKILL and --resume, summary.json lists the first coordinator\'s too', async (t) => {
  const dir = tempDir('failhist');
  const cfg = writeConfig(dir, { budget: { kind: 'steps', steps: 60 }, train: { batchSize: 4, evalEvery: 20, checkpointEvery: 4 }, dist: { minWorkers: 2, initialWorkers: 3, hashEvery: 4 } });
  const first = await startCoordinator(['--config', cfg]);
  const workers = [0, 1, 2].map((i) => startWorker(first.url, `w${i}`));
  await first.proc.waitFor(/checkpoint: .*step-00000004/);
  workers[1].kill('SIGKILL');
  const failure = (await first.proc.waitFor(/ring formation 1 failed: (.*)$/))[1];
  await first.proc.waitFor(/re-forming the ring from the checkpoint/);
  first.proc.kill('SIGKILL');
  await first.proc.exited;
  const runDir = path.dirname(path.dirname((await first.proc.waitFor(/checkpoint: (\S+)/))[1]));
  // The two workers left retry the same port; a new one joins them.
  const second = spawnTtc(['coordinator', '--resume', runDir, '--port', new URL(first.url).port], env);
  workers.push(startWorker(first.url, 'w3'));
  t.is(await second.exited, 0, second.lines.slice(-30).join('\n'));
  const summary = JSON.parse(fs.readFileSync(path.join(runDir, 'summary.json'), 'utf8'));
  t.true(summary.completed);
  t.is(summary.failures[0], failure, 'the failure the first coordinator saw');
  t.regex(second.lines.join('\n'), /\d+ worker failure\(s\) before this coordinator started/);
  for (const w of [workers[0], workers[2], workers[3]]) t.is(await w.exited, 0);
});

test('a worker with a wrong secret is refused, with the reason logged on both sides', async (t) => {
  const dir = tempDir('secret');
  const cfg = writeConfig(dir, { dist: { minWorkers: 1, waitForWorkersSeconds: scaled(300) } });
  const { proc: coord, url } = await startCoordinator(['--config', cfg]);
  const bad = startWorker(url, 'intruder', { TTC_SECRET: 'this-is-not-the-right-secret' });
  t.is(await bad.exited, 1);
  t.regex(bad.lines.join('\n'), /authentication failed/i);
  await coord.waitFor(/auth.*(fail|wrong)/i, 10_000);
  t.false(coord.lines.join('\n').includes('"intruder" (pid'), 'the intruder never registered');
  // A status query with the right secret works and shows no workers.
  const status = spawnTtc(['status', '--coordinator', url, '--json'], env);
  t.is(await status.exited, 0, status.lines.join('\n'));
  const s = JSON.parse(status.lines.join('\n'));
  t.is(s.phase, 'waiting for workers');
  t.deepEqual(s.workers, []);
  // Plain HTTP on the same port: probes for Kubernetes, GET/HEAD only, a status and nothing about the run.
  const http = url.replace('ws://', 'http://');
  for (const probe of ['/healthz', '/readyz']) {
    const health = await fetch(`${http}${probe}`);
    t.is(health.status, 200);
    t.is(await health.text(), 'ok\n');
    t.is((await fetch(`${http}${probe}`, { method: 'HEAD' })).status, 200);
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const r = await fetch(`${http}${probe}`, { method });
      t.is(r.status, 405, `${method} ${probe}`);
      t.is(r.headers.get('allow'), 'GET, HEAD');
    }
  }
  t.is((await fetch(`${http}/nope`)).status, 404);
  // /metrics: only with the read token; with it, the run waiting at step 0 and no worker (the intruder never counted).
  const unauth = await fetch(`${http}/metrics`);
  t.is(unauth.status, 401);
  t.false((await unauth.text()).includes(s.runId));
  const metrics = await fetch(`${http}/metrics`, { headers: { authorization: `Bearer ${httpReadToken(normalizeSecret(SECRET))}` } });
  t.is(metrics.status, 200);
  const text = await metrics.text();
  t.true(text.includes(`\nttc_train_step{run="${s.runId}"} 0\n`), text);
  t.true(text.includes('\nttc_workers_connected 0\n'), text);
  // The dashboard of a coordinator of one run (docs/dashboard.md; tested in depth in dashboard.test.ts): the same token, its run listed.
  t.is((await fetch(`${http}/api/overview`)).status, 401);
  const overview = await fetch(`${http}/api/overview`, { headers: { authorization: `Bearer ${httpReadToken(normalizeSecret(SECRET))}` } });
  t.like(await overview.json(), { kind: 'run', workers: [], runs: [{ id: s.runId, kind: 'train', state: 'running', step: 0 }] });
  coord.kill('SIGTERM');
  await coord.exited;
});

test('a flood of 100 bare WebSocket upgrades from one address does not lock a worker out: it joins from another and the run completes', async (t) => {
  const { holdUpgrades } = await import('./kit/netkit.ts');
  const dir = tempDir('flood');
  const cfg = writeConfig(dir, { dist: { minWorkers: 1, waitForWorkersSeconds: 120 }, budget: { kind: 'steps', steps: 3 } });
  const { proc: coord, url } = await startCoordinator(['--config', cfg]);
  // Linux loopback answers any 127.x.y.z: the flood comes from 127.0.0.2, the worker from 127.0.0.1
  const flood = holdUpgrades(url, 100, '127.0.0.2');
  t.teardown(() => { flood.stop(); coord.kill(); });
  for (let i = 0; i < 200 && !flood.codes.get(1013); i++) await new Promise((r) => setTimeout(r, 50));
  t.truthy(flood.codes.get(1013), 'the flood reached the limit (1013) before the worker started');
  const w = startWorker(url, 'legit');
  // before the fix the worker met 1013 and exited for good, and the coordinator waited for workers
  const workerFailed = w.exited.then((code) => (code === 0 ? new Promise<never>(() => {}) : { who: 'worker', code }));
  const first = await Promise.race([coord.exited.then((code) => ({ who: 'coordinator', code })), workerFailed]);
  t.deepEqual(first, { who: 'coordinator', code: 0 }, [...w.lines.slice(-10), ...coord.lines.slice(-10)].join('\n'));
  flood.stop();
  t.regex(coord.lines.join('\n'), /completed its budget: 3\/3 steps/);
  t.is(await w.exited, 0, w.lines.slice(-20).join('\n'));
  // the flood was held to its share: refused (1013) and, silent, dropped at the hello deadline (4408)
  t.true((flood.codes.get(1013) ?? 0) > 0 && (flood.codes.get(4408) ?? 0) > 0, JSON.stringify([...flood.codes]));
});

test('1,000+ random, malformed, wrong-schema and oversized frames at a coordinator process: each refused, no crash, the run still completes', async (t) => {
  const { default: WebSocket } = await import('ws');
  const { Packr } = await import('msgpackr');
  const { connect } = await import('../wire/net/index.ts');
  const { M } = await import('../protocol/index.ts');
  const { PROTOCOL_VERSION } = await import('../wire/protocol/index.ts');
  const { Rng } = await import('../core/rng.ts');
  const dir = tempDir('fuzz');
  const cfg = writeConfig(dir, { dist: { minWorkers: 1, waitForWorkersSeconds: scaled(120) }, budget: { kind: 'steps', steps: 3 } });
  const { proc: coord, url } = await startCoordinator(['--config', cfg]);
  const rng = new Rng(99);
  const packr = new Packr({ useRecords: false, moreTypes: true });
  const randomBytes = (n: number) => Buffer.from(Array.from({ length: n }, () => rng.int(256)));
  const wrongSchema = (): Buffer => {
    const pick = rng.int(6);
    if (pick === 0) return packr.pack({ v: PROTOCOL_VERSION, t: 'coord.step-done', formation: 'x', step: -1 });
    if (pick === 1) return packr.pack({ v: PROTOCOL_VERSION, t: 'coord.register', name: 'w', pid: 1, advertiseHost: 'h', ringPort: 1, extra: true });
    if (pick === 2) return packr.pack({ v: PROTOCOL_VERSION + 1, t: 'coord.status-request' });
    if (pick === 3) return packr.pack({ v: PROTOCOL_VERSION, t: 'coord.no-such-type' });
    if (pick === 4) return packr.pack({ v: PROTOCOL_VERSION, t: 'coord.blob', stream: 'state/1/1', name: 'weights', offset: 0, total: 3, data: [1, 2, 3] });
    return packr.pack([1, 2, 3]);
  };
  const preAuth = (frame: Buffer) =>
    new Promise<number>((resolve) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      const timer = setTimeout(() => { ws.terminate(); resolve(-1); }, scaled(10_000));
      ws.on('open', () => ws.send(frame));
      ws.on('close', (code) => { clearTimeout(timer); resolve(code); });
      ws.on('error', () => {});
    });
  const postAuth = async (frame: Buffer) => {
    const conn = await connect({ url, secret: SECRET, role: 'worker', name: 'fuzzer', messages: M.toWorker, log: () => {} });
    return new Promise<number>((resolve) => {
      const timer = setTimeout(() => { conn.terminate(); resolve(-1); }, scaled(10_000));
      conn.onClose((info) => { clearTimeout(timer); resolve(info.code); });
      conn.sendEncoded(frame);
    });
  };
  const jobs: Array<() => Promise<number>> = [];
  for (let i = 0; i < 450; i++) jobs.push(() => preAuth(i % 3 === 0 ? wrongSchema() : randomBytes(1 + rng.int(300))));
  for (let i = 0; i < 550; i++) jobs.push(() => postAuth(i % 2 === 0 ? wrongSchema() : randomBytes(1 + rng.int(300))));
  for (let i = 0; i < 4; i++) jobs.push(() => postAuth(Buffer.alloc(17 * 1024 * 1024, 7))); // over maxPayload (16 MiB)
  const codes: number[] = [];
  for (let i = 0; i < jobs.length; i += 8) codes.push(...(await Promise.all(jobs.slice(i, i + 8).map((j) => j()))));
  t.is(codes.length, 1004);
  t.deepEqual(codes.filter((c) => c === -1), [], 'every bad frame got its connection closed');
  t.true(coord.child.exitCode === null, 'the coordinator is still running');
  // The same coordinator still runs a real training job.
  const w = startWorker(url, 'real');
  t.is(await coord.exited, 0, coord.lines.slice(-20).join('\n'));
  t.regex(coord.lines.join('\n'), /completed its budget: 3\/3 steps/);
  t.is(await w.exited, 0);
});

test('ttc local killed with SIGKILL: its workers stop by themselves (no orphan trains on)', async (t) => {
  const dir = tempDir('orphans');
  const cfg = writeConfig(dir, { budget: { kind: 'steps', steps: 100000 }, train: { batchSize: 4, evalEvery: 1000, checkpointEvery: 1000 } });
  const local = spawnTtc(['local', '--workers', '2', '--config', cfg], env);
  await local.waitFor(/step 0: validation loss/, 120_000);
  // the coordinator runs inside ttc local; its 2 workers are its only child processes
  const kids = childProcesses(local.child.pid!);
  t.deepEqual(kids.map((pid) => / worker --coordinator /.test(cmdline(pid))), [true, true], `2 workers under ttc local: ${kids.map(cmdline).join(' | ')}`);
  const tree = descendants(local.child.pid!);
  local.kill('SIGKILL');
  await local.exited;
  // they see their stdin pipe close (core/run/parent-watch.ts) and stop as on Ctrl-C
  const left = await waitGone(tree, 20_000);
  t.deepEqual(left, [], `still running ${scaled(20_000) / 1000} s after ttc local was killed: ${left.join(', ')}`);
});

test('Ctrl-C on ttc local finishes the step, writes a checkpoint and stops every process; --resume continues the run to its budget', async (t) => {
  const dir = tempDir('interrupt');
  const cfg = writeConfig(dir, { budget: { kind: 'steps', steps: 40 }, train: { batchSize: 4, evalEvery: 100, checkpointEvery: 100 } });
  const local = spawnTtc(['local', '--workers', '2', '--config', cfg], env);
  await local.waitFor(/step 0: validation loss/, 120_000);
  const tree = descendants(local.child.pid!);
  local.kill('SIGINT');
  t.is(await local.exited, 130, local.lines.slice(-20).join('\n'));
  const out = local.lines.join('\n');
  t.regex(out, /interrupted: finishing this step and writing a checkpoint/);
  t.regex(out, /stopped early \(resumable\)/);
  const runDir = runDirOf(local);
  const summary = JSON.parse(fs.readFileSync(path.join(runDir, 'summary.json'), 'utf8'));
  t.false(summary.completed);
  const stoppedAt = summary.steps as number;
  t.true(stoppedAt < 40);
  t.is(path.basename(listCheckpointDirs(checkpointsDir(runDir)).at(-1)!), `step-${String(stoppedAt).padStart(8, '0')}`, 'a checkpoint at the step it stopped');
  t.deepEqual(await waitGone(tree, 20_000), [], 'the workers stopped with it');
  const resumed = spawnTtc(['local', '--workers', '2', '--resume', runDir], env);
  t.is(await resumed.exited, 0, resumed.lines.slice(-20).join('\n'));
  t.regex(resumed.lines.join('\n'), new RegExp(`resuming run \\S+ from its checkpoint at step ${stoppedAt}/40`));
  t.regex(resumed.lines.join('\n'), /completed its budget: 40\/40 steps/);
});

test('a coordinator waiting for workers stops at once on SIGTERM, with a one-line reason', async (t) => {
  const dir = tempDir('waiting');
  const { proc } = await startCoordinator(['--config', writeConfig(dir, { dist: { minWorkers: 2, waitForWorkersSeconds: 600 } })]);
  await proc.waitFor(/waiting for 2 worker\(s\)/);
  proc.kill('SIGTERM');
  t.is(await proc.exited, 1);
  t.regex(proc.lines.join('\n'), /^ttc coordinator: cancelled while waiting for workers \(0 of 2 connected\)$/m);
});
