/**
 * The run server (`ttc serve`) with real worker processes: runs and sweeps submitted with
 * `ttc run` complete on workers that stay connected between runs, `ttc report` fetches the
 * results, a wrong secret or a bad config is refused without creating anything, a running run is
 * cancelled, and a server killed mid-run continues the run from its checkpoint after a restart.
 */
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawnTtc, type Proc } from './kit/procs.ts';
import { tempDir, TEST_CACHE_DIR, TINY_MODEL } from './kit/helpers.ts';
import { CliSession, coordinatorUrl } from '../cli/client.ts';
import { resultFiles } from '../coordinator/result-files.ts';
import * as M from '../protocol/messages.ts';
import type { Message } from '../wire/protocol/index.ts';
import { compressionGrid } from '../compression/grid.ts';
import { resolveSweepConfig } from '../coordinator/sweep-config.ts';
import { selfSignedCert } from './kit/netkit.ts';
import { OPENSSL, testIf } from './kit/tools.ts';
import { scaled } from './kit/time-scale.mjs';

const SECRET = crypto.randomBytes(24).toString('base64');
process.env.TTC_SECRET = SECRET;
delete process.env.TTC_SECRET_FILE;
const env = { TTC_SECRET: SECRET, TTC_SECRET_FILE: undefined, TTC_COORDINATOR: undefined };

const runConfig = (steps: number, extra: Record<string, unknown> = {}) => ({
  cacheDir: TEST_CACHE_DIR,
  backend: 'cpu',
  threads: 1,
  model: TINY_MODEL,
  train: { batchSize: 4, evalEvery: 4, checkpointEvery: 4 },
  data: { maxValidationSequences: 16 },
  budget: { kind: 'steps', steps },
  dist: { minWorkers: 2 },
  ...extra,
});

function writeJson(dir: string, name: string, value: unknown): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, JSON.stringify(value));
  return file;
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

async function startServer(outputDir: string, port = 0): Promise<{ proc: Proc; url: string }> {
  const proc = spawnTtc(['serve', '--port', String(port), '--output-dir', outputDir], env);
  const url = (await proc.waitFor(/TTC_COORDINATOR_URL=(\S+)/))[1];
  return { proc, url };
}

const startWorkers = (url: string, n = 2) => Array.from({ length: n }, (_, i) => spawnTtc(['worker', '--coordinator', url, '--name', `w${i}`, '--retry-seconds', String(scaled(120))], env));

async function runState(url: string, runId: string): Promise<{ state: string; step?: number; etaSeconds?: number | null; budgetFraction?: number | null }> {
  const s = await CliSession.open(url, 'test');
  try {
    const st = await s.status(runId);
    if (st.kind !== 'server') throw new Error(`not a run server: ${st.kind}`);
    const r = st.runs[0]!;
    const training = st.current?.id === runId ? st.current.training : undefined;
    return { state: r.state, step: training?.step, etaSeconds: training?.etaSeconds, budgetFraction: training?.budgetFraction };
  } finally {
    s.close();
  }
}

/** Polls `probe` (a status query: there is no event to wait for) until it gives a value. */
async function waitUntil<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = scaled(180_000)): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

test.serial('a run and a sweep submitted with `ttc run` complete on the server\'s workers, and `ttc report` fetches their results', async (t) => {
  const dir = tempDir('serve');
  const out = path.join(dir, 'runs');
  const { proc: server, url } = await startServer(out);
  const workers = startWorkers(url);
  try {
    // A training run, followed to its end; its results fetched as `ttc run --report-dir` does.
    const run = spawnTtc(['run', '--coordinator', url.replace('ws://', 'http://'), '--config', writeJson(dir, 'tiny.json', runConfig(8)), '--report-dir', path.join(dir, 'rep-run')], env);
    t.is(await run.exited, 0, run.lines.slice(-15).join('\n'));
    const runId = run.lines.map((l) => l.match(/^TTC_RUN_ID=(\S+)/)?.[1]).find(Boolean)!;
    t.regex(runId, /^tiny-\d{8}-\d{6}$/);
    t.regex(run.lines.join('\n'), /run tiny-\S+ done: final validation loss \d+\.\d+ after 8 steps/);
    const summary = JSON.parse(fs.readFileSync(path.join(dir, 'rep-run', 'summary.json'), 'utf8'));
    t.true(summary.completed);
    t.is(summary.steps, 8);
    const steps = fs.readFileSync(path.join(dir, 'rep-run', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step as number);
    t.is(Math.max(...steps), 8);
    t.false(fs.existsSync(path.join(dir, 'rep-run', 'checkpoints')), 'checkpoints stay on the server');
    t.true(fs.existsSync(path.join(out, runId, 'checkpoints')));

    // A sweep with its compression + evaluation step, on the same (still connected) workers.
    const sweepRaw = {
      workers: 2,
      base: { cacheDir: TEST_CACHE_DIR, backend: 'cpu', threads: 1, model: { seqLen: TINY_MODEL.seqLen, vocab: TINY_MODEL.vocab }, train: { batchSize: 4, evalEvery: 2, checkpointEvery: 2 }, data: { maxValidationSequences: 16 }, dist: { minWorkers: 2 } },
      sizes: [{ layers: 1, hidden: 32, heads: 2, ffn: 64 }],
      budgets: [{ id: 'b0', kind: 'flops', value: 2e8 }],
      evaluation: { finetune: { steps: 4, batchSize: 16 }, maxTrain: 128, maxDev: 32, maxTest: 32, compression: { bits: [8], granularities: ['channel'], embeddings: [false], sparsities: [0.5], iterative: { rounds: 1, stepsPerRound: 2 }, combined: [] } },
    };
    const sweep = spawnTtc(['run', '--coordinator', url, '--config', writeJson(dir, 'tiny-sweep.json', sweepRaw), '--report-dir', path.join(dir, 'rep-sweep')], env);
    t.is(await sweep.exited, 0, sweep.lines.slice(-15).join('\n'));
    const rep = path.join(dir, 'rep-sweep');
    for (const f of ['report.html', 'report.md', 'results.csv', 'pretraining.json', 'cells.jsonl', 'plots/isoflop.svg']) t.true(fs.existsSync(path.join(rep, f)), f);
    const cells = fs.readFileSync(path.join(rep, 'cells.jsonl'), 'utf8').trim().split('\n');
    t.is(cells.length, compressionGrid(resolveSweepConfig(sweepRaw).evaluation!.compression).length);
    t.false(fs.readdirSync(path.join(rep, 'members', 'L1-d32_b0')).includes('checkpoints'));

    // Both runs on the server's record; the workers stayed for the next run.
    const status = spawnTtc(['status', '--coordinator', url], env);
    t.is(await status.exited, 0);
    const text = status.lines.join('\n');
    t.regex(text, /run server: idle/);
    t.regex(text, /workers \(2\)/);
    t.is((text.match(/: done/g) ?? []).length, 2, text);
    for (const w of workers) t.is(w.child.exitCode, null, 'workers stay connected between runs');
  } finally {
    server.kill('SIGTERM');
    for (const w of workers) w.kill();
    await server.exited;
  }
});

test.serial('a wrong secret or an invalid config is refused and creates nothing; the server goes on serving', async (t) => {
  const dir = tempDir('serve-refuse');
  const out = path.join(dir, 'runs');
  const { proc: server, url } = await startServer(out);
  try {
    const cfg = writeJson(dir, 'tiny.json', runConfig(4));
    const wrong = { ...env, TTC_SECRET: crypto.randomBytes(24).toString('base64') };
    for (const args of [['run', '--config', cfg], ['status'], ['report', '--run', 'x'], ['cancel', '--run', 'x']]) {
      const p = spawnTtc([args[0], '--coordinator', url, ...args.slice(1)], wrong);
      t.is(await p.exited, 1, args[0]);
      t.regex(p.lines.join('\n'), /refused us: authentication failed — check TTC_SECRET/, args[0]);
    }
    await server.waitFor(/auth failed: wrong secret .*role=cli/);

    // A config that the CLI would have stopped, sent as-is: the server validates it again.
    const s = await CliSession.open(url, 'test');
    try {
      const bad = { ...runConfig(4), model: { ...TINY_MODEL, heads: 3 } };
      const err = await t.throwsAsync(s.request(() => s.connection.send(M.Submit, { kind: 'train', name: 'bad', config: JSON.stringify(bad) }), (m): m is Message<typeof M.Submitted> => m.t === 'coord.submitted'));
      t.regex(err!.message, /refused: .*model\.hidden.*model\.heads/s);
      const notJson = await t.throwsAsync(s.request(() => s.connection.send(M.Submit, { kind: 'sweep', name: 'bad', config: '{"sizes": [' }), (m): m is Message<typeof M.Submitted> => m.t === 'coord.submitted'));
      t.regex(notJson!.message, /not JSON/);
      const st = await s.status();
      t.is(st.kind, 'server');
      t.deepEqual(st.kind === 'server' && st.runs, []);
    } finally {
      s.close();
    }
    t.deepEqual(fs.readdirSync(out).filter((f) => f !== 'queue.json'), [], 'no run directory was created');

    // A single-run coordinator (`ttc coordinator`) is not a run server: it says so.
    const single = spawnTtc(['coordinator', '--config', writeJson(dir, 'single.json', { ...runConfig(4), outputDir: path.join(dir, 'single') }), '--port', '0'], env);
    const singleUrl = (await single.waitFor(/TTC_COORDINATOR_URL=(\S+)/))[1];
    const refused = spawnTtc(['run', '--coordinator', singleUrl, '--config', cfg], env);
    t.is(await refused.exited, 1);
    t.regex(refused.lines.join('\n'), /refused: this coordinator drives a single run .*ttc serve/);
    single.kill('SIGTERM');
    await single.exited;
  } finally {
    server.kill('SIGTERM');
    await server.exited;
  }
});

test.serial('a submission with __proto__ / constructor keys, a runId or sweepId that is a path, or a model no machine holds is refused with the reason; nothing written; the server keeps serving', async (t) => {
  const dir = tempDir('serve-unsafe');
  const out = path.join(dir, 'runs');
  const { proc: server, url } = await startServer(out);
  try {
    const s = await CliSession.open(url, 'test');
    try {
      const good = JSON.stringify(runConfig(4));
      const sweep = (extra: Record<string, unknown>) => JSON.stringify({ base: runConfig(4), sizes: [{ layers: 1, hidden: 64 }], budgets: [{ kind: 'flops', value: 1e11 }], ...extra });
      const huge = { layers: 64, hidden: 4096, heads: 16, ffn: 16384 };
      // sent as-is through the client's own connection: the CLI would have refused them before sending
      const cases: Array<['train' | 'sweep', string, string, RegExp]> = [
        ['train', `{"__proto__": {"polluted": 1}, ${good.slice(1)}`, 'TTC_ERR_CONFIG', /refused: config: key "__proto__" is not allowed/],
        ['train', good.replace('"model":{', '"model":{"constructor":{"prototype":{"polluted":1}},'), 'TTC_ERR_CONFIG', /refused: config: key "model\.constructor" is not allowed/],
        ['sweep', sweep({}).replace('"sizes":[{', '"sizes":[{"__proto__":{"polluted":1},'), 'TTC_ERR_CONFIG', /refused: submitted sweep "bad": key "sizes\[0\]\.__proto__" is not allowed/],
        ['train', JSON.stringify({ ...runConfig(4), runId: '../escape' }), 'TTC_ERR_CONFIG', /refused: invalid config: runId: expected a run id .*got "\.\.\/escape"/],
        ['sweep', sweep({ sweepId: '../escape' }), 'TTC_ERR_CONFIG', /refused: invalid submitted sweep "bad":\s+sweepId: expected a run id .*got "\.\.\/escape"/],
        ['train', JSON.stringify({ ...runConfig(4), model: { ...huge, seqLen: 32, vocab: 1000 } }), 'TTC_ERR_CONFIG', /refused: model\.hidden=4096, model\.layers=64, model\.ffn=16384: the model would have 12,909,335,528 parameters, over the 4,294,967,296 one typed array/],
        ['sweep', sweep({ sizes: [huge] }), 'TTC_ERR_CONFIG', /refused: sweep member L64-d4096_F1\.0e11: model\.hidden=4096, model\.layers=64, model\.ffn=16384: the model would have/],
      ];
      for (const [kind, config, code, reason] of cases) {
        const err = await t.throwsAsync(s.request(() => s.connection.send(M.Submit, { kind, name: 'bad', config }), (m): m is Message<typeof M.Submitted> => m.t === 'coord.submitted'));
        t.regex(err!.message, reason, config);
        t.is((err as { code?: string }).code, code, config);
      }
      const st = await s.status();
      t.deepEqual(st.kind === 'server' && st.runs, [], 'nothing queued; the server still answers');
    } finally {
      s.close();
    }
    t.deepEqual(fs.readdirSync(out).filter((f) => f !== 'queue.json'), [], 'no run directory');
    t.deepEqual(fs.readdirSync(dir), ['runs'], 'nothing outside the output directory');
    await server.waitFor(/submission "bad" refused: sweep member L64-d4096/);
  } finally {
    server.kill('SIGTERM');
    await server.exited;
  }
});

test.serial('a server killed mid-run continues it from its checkpoint after a restart; `ttc cancel` stops a running run; the workers then take the next run', async (t) => {
  const dir = tempDir('serve-restart');
  const out = path.join(dir, 'runs');
  const port = await freePort();
  let { proc: server, url } = await startServer(out, port);
  const workers = startWorkers(url);
  try {
    const long = spawnTtc(['run', '--coordinator', url, '--config', writeJson(dir, 'long.json', runConfig(2000)), '--detach'], env);
    t.is(await long.exited, 0);
    const runId = long.lines.map((l) => l.match(/^TTC_RUN_ID=(\S+)/)?.[1]).find(Boolean)!;
    // A follower that stays through the server's restart.
    const follower = spawnTtc(['status', '--coordinator', url, '--run', runId, '--follow', '--interval', '0.5'], env);
    // Past a checkpoint (every 4 steps), then the server dies without warning.
    await waitUntil('step 10', async () => ((await runState(url, runId)).step! >= 10 ? true : undefined));
    server.kill('SIGKILL');
    await server.exited;
    const checkpointed = fs.readdirSync(path.join(out, runId, 'checkpoints')).length;
    t.true(checkpointed >= 1);

    ({ proc: server, url } = await startServer(out, port));
    await server.waitFor(new RegExp(`run ${runId} was interrupted by a server restart`));
    await server.waitFor(new RegExp(`resuming run ${runId} from its checkpoint at step (\\d+)`), 120_000);
    const resumedAt = Number((await server.waitFor(/resuming run \S+ from its checkpoint at step (\d+)/))[1]);
    t.true(resumedAt >= 4);
    const after = await waitUntil('training again', async () => {
      const s = await runState(url, runId);
      return s.state === 'running' && s.step !== undefined && s.step > resumedAt + 2 ? s : undefined;
    });
    t.is(after.state, 'running');
    // The live view carries the budget used and an ETA from the resumed coordinator's own step times.
    t.true(typeof after.etaSeconds === 'number' && after.etaSeconds > 0, `etaSeconds ${after.etaSeconds}`);
    t.true(after.budgetFraction! > 0 && after.budgetFraction! < 1, `budgetFraction ${after.budgetFraction}`);

    const cancel = spawnTtc(['cancel', '--coordinator', url, '--run', runId], env);
    t.is(await cancel.exited, 0);
    t.regex(cancel.lines.join('\n'), /stopping at its next step/);
    await waitUntil('cancelled', async () => ((await runState(url, runId)).state === 'cancelled' ? true : undefined), 60_000);
    t.is(await follower.exited, 1, 'following a cancelled run ends with status 1');
    const followed = follower.lines.join('\n');
    t.regex(followed, /lost the coordinator .* reconnecting/);
    t.regex(followed, /reconnected/);
    t.regex(followed, new RegExp(`run ${runId} cancelled: cancelled`));
    t.regex(followed, /running — training — step \d+\/2000 \(\d+\.\d% of budget\), loss \S+, val \S+, \S+ tok\/s, ETA (-|\d+s|\d+m\d\ds)/);
    // The metrics of the interrupted run have each step once.
    const steps = fs.readFileSync(path.join(out, runId, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step as number);
    t.is(new Set(steps).size, steps.length, 'no step recorded twice');

    const next = spawnTtc(['run', '--coordinator', url, '--config', writeJson(dir, 'next.json', runConfig(4))], env);
    t.is(await next.exited, 0, next.lines.slice(-15).join('\n'));
    t.regex(next.lines.join('\n'), /done: final validation loss/);
    for (const w of workers) t.is(w.child.exitCode, null);
  } finally {
    server.kill('SIGTERM');
    for (const w of workers) w.kill();
    await server.exited;
  }
});

test('--coordinator accepts ws(s)://, http(s):// and host:port; other schemes are refused', (t) => {
  t.is(coordinatorUrl('http://10.0.0.5:7070'), 'ws://10.0.0.5:7070');
  t.is(coordinatorUrl('https://ttc.example.com'), 'wss://ttc.example.com');
  t.is(coordinatorUrl('wss://ttc.example.com:8443'), 'wss://ttc.example.com:8443');
  t.is(coordinatorUrl('127.0.0.1:7070'), 'ws://127.0.0.1:7070');
  t.throws(() => coordinatorUrl('ftp://x:1'), { message: /expected ws:\/\/, wss:\/\/, http:\/\/ or https:\/\// });
});

test('`ttc report` sends results, never checkpoints, fine-tuned weights or temporary files', (t) => {
  const dir = tempDir('result-files');
  const files = ['report.html', 'results.csv', 'plots/isoflop.svg', 'members/m1/summary.json', 'members/m1/metrics.jsonl', 'members/m1.config.json',
    'members/m1/checkpoints/step-00000004/model.safetensors', 'members/m1/checkpoints/step-00000004/state.json', 'finetuned/m1.safetensors', 'checkpoints/step-1/state.json',
    'cells.jsonl.tmp-123', '.hidden.json', 'queue.json'];
  for (const f of files) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), 'x');
  }
  t.deepEqual(resultFiles(dir).sort(), ['members/m1.config.json', 'members/m1/metrics.jsonl', 'members/m1/summary.json', 'plots/isoflop.svg', 'queue.json', 'report.html', 'results.csv']);
});

testIf(OPENSSL, 'openssl not installed', { serial: true })('over TLS: `ttc run --coordinator https://…` reaches a run server serving wss:// and the run completes; without the CA the certificate is refused', async (t) => {
  const tls = selfSignedCert();
  if (!tls) throw new Error('openssl could not make a certificate');
  t.teardown(() => fs.rmSync(tls.dir, { recursive: true, force: true }));
  const dir = tempDir('serve-tls');
  const serverEnv = { ...env, TTC_TLS_CERT: tls.cert, TTC_TLS_KEY: tls.key };
  const server = spawnTtc(['serve', '--port', '0', '--output-dir', path.join(dir, 'runs')], serverEnv);
  const url = (await server.waitFor(/TTC_COORDINATOR_URL=(\S+)/))[1];
  t.regex(url, /^wss:\/\/127\.0\.0\.1:\d+$/);
  // Workers verify the server with the CA and use the certificate for their ring links too.
  const workers = [0, 1].map((i) => spawnTtc(['worker', '--coordinator', url, '--name', `w${i}`], { ...serverEnv, TTC_TLS_CA: tls.cert }));
  try {
    const cfg = writeJson(dir, 'tiny.json', runConfig(4));
    const https = url.replace('wss://', 'https://');
    const noCa = spawnTtc(['run', '--coordinator', https, '--config', cfg], env);
    t.is(await noCa.exited, 1);
    t.regex(noCa.lines.join('\n'), /certificate/i);
    const run = spawnTtc(['run', '--coordinator', https, '--config', cfg], { ...env, TTC_TLS_CA: tls.cert });
    t.is(await run.exited, 0, run.lines.slice(-10).join('\n'));
    t.regex(run.lines.join('\n'), /done: final validation loss/);
    t.true(workers.some((w) => w.lines.some((l) => /ring of 2 up|ring listener/.test(l))));
  } finally {
    server.kill('SIGTERM');
    for (const w of workers) w.kill();
    await server.exited;
  }
});
