/**
 * `/metrics` on a real run server (`ttc serve`) with real workers, scraped over HTTP: refused
 * without the read token derived from the secret (and telling nothing), Prometheus text with it,
 * the step growing while the run trains and the final step once it is done; `ttc token` prints the
 * same token; the probes stay open.
 */
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawnTtc } from './kit/procs.ts';
import { tempDir, TEST_CACHE_DIR, TINY_MODEL } from './kit/helpers.ts';
import { scaled } from './kit/time-scale.mjs';
import { httpReadToken, normalizeSecret } from '../wire/auth.ts';

const SECRET = crypto.randomBytes(24).toString('base64');
const env = { TTC_SECRET: SECRET, TTC_SECRET_FILE: undefined, TTC_COORDINATOR: undefined };
const TOKEN = httpReadToken(normalizeSecret(SECRET));
const STEPS = 40;

/** The samples of a Prometheus text exposition, by `name{labels}`; throws on a line that is not one. */
function parseProm(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    out.set(m[1]!, m[2] === 'NaN' ? NaN : m[2] === '+Inf' ? Infinity : m[2] === '-Inf' ? -Infinity : Number(m[2]));
  }
  return out;
}

async function scrape(base: string, runId: string): Promise<{ samples: Map<string, number>; step: number }> {
  const res = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: AbortSignal.timeout(scaled(10_000)) });
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  if (!res.headers.get('content-type')?.startsWith('text/plain; version=0.0.4')) throw new Error(`content-type ${res.headers.get('content-type')}`);
  const samples = parseProm(await res.text());
  return { samples, step: samples.get(`ttc_train_step{run="${runId}"}`) ?? -1 };
}

/** The step of a checkpoint log line (`checkpoint: …/step-00000012`). */
const checkpointStep = /checkpoint: \S*step-(\d{8})$/;

test('/metrics needs the read token; with it, Prometheus text whose step grows while the run trains and ends at the final step', async (t) => {
  const dir = tempDir('metrics');
  const server = spawnTtc(['serve', '--port', '0', '--output-dir', path.join(dir, 'runs')], env);
  const workers: ReturnType<typeof spawnTtc>[] = [];
  try {
    const url = (await server.waitFor(/TTC_COORDINATOR_URL=(\S+)/))[1]!;
    const base = url.replace('ws://', 'http://');

    // `ttc token` prints what the test derives from the secret.
    const tokenCmd = spawnTtc(['token'], env);
    t.is(await tokenCmd.exited, 0);
    t.deepEqual(tokenCmd.lines, [TOKEN]);

    workers.push(...[0, 1].map((i) => spawnTtc(['worker', '--coordinator', url, '--name', `w${i}`, '--retry-seconds', String(scaled(120))], env)));
    const cfg = path.join(dir, 'tiny.json');
    fs.writeFileSync(cfg, JSON.stringify({
      cacheDir: TEST_CACHE_DIR, backend: 'cpu', threads: 1, model: TINY_MODEL,
      train: { batchSize: 4, evalEvery: 4, checkpointEvery: 4 }, data: { maxValidationSequences: 16 },
      budget: { kind: 'steps', steps: STEPS }, dist: { minWorkers: 2 },
    }));
    const submit = spawnTtc(['run', '--coordinator', url, '--config', cfg, '--detach'], env);
    t.is(await submit.exited, 0, submit.lines.join('\n'));
    const runId = submit.lines.map((l) => /^TTC_RUN_ID=(\S+)/.exec(l)?.[1]).find(Boolean)!;

    // No token, a wrong one, another scheme: 401, a Bearer challenge, nothing about the run.
    for (const authorization of [undefined, `Bearer ${'0'.repeat(64)}`, `Bearer ${TOKEN.slice(1)}`, `Basic ${TOKEN}`]) {
      const res = await fetch(`${base}/metrics`, { headers: authorization ? { authorization } : {} });
      t.is(res.status, 401, String(authorization));
      t.regex(res.headers.get('www-authenticate') ?? '', /^Bearer/);
      const body = await res.text();
      t.false(body.includes(runId) || body.includes('ttc_'), body);
    }
    t.is((await fetch(`${base}/metrics`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })).status, 405);
    t.is((await fetch(`${base}/healthz`)).status, 200, 'the probes need no token');

    // While it trains: two scrapes around a later checkpoint, the step grows.
    await server.waitFor(checkpointStep, scaled(180_000));
    const first = await scrape(base, runId);
    t.true(first.step >= 4 && first.step < STEPS, `step ${first.step} after the first checkpoint`);
    await server.waitFor(new RegExp(`checkpoint: \\S*step-0*(${Array.from({ length: STEPS - first.step }, (_, i) => first.step + 1 + i).join('|')})$`), scaled(180_000));
    const second = await scrape(base, runId);
    t.true(second.step > first.step, `${first.step} → ${second.step}`);
    t.is(second.samples.get(`ttc_train_steps_planned{run="${runId}"}`), STEPS);
    t.is(second.samples.get('ttc_workers_connected'), 2);
    t.true(second.samples.get(`ttc_train_tokens_total{run="${runId}"}`)! > 0);
    t.true(Number.isFinite(second.samples.get(`ttc_train_loss{run="${runId}"}`)));
    t.true(second.samples.get(`ttc_step_allreduce_seconds{run="${runId}"}`)! >= 0);
    t.is(second.samples.get(`ttc_worker_failures_total{run="${runId}"}`), 0);
    t.is(second.samples.get('ttc_runs{state="running"}'), 1);

    // Done: the final step stays on the server's metrics.
    await server.waitFor(new RegExp(`run ${runId}: done`), scaled(180_000));
    const last = await scrape(base, runId);
    t.is(last.step, STEPS);
    t.is(last.samples.get(`ttc_budget_used_ratio{run="${runId}"}`), 1);
    t.true(Number.isFinite(last.samples.get(`ttc_validation_loss{run="${runId}"}`)));
    t.is(last.samples.get('ttc_runs{state="done"}'), 1);
    t.is(last.samples.get('ttc_runs{state="running"}'), 0);
  } finally {
    server.kill('SIGTERM');
    for (const w of workers) w.kill();
    await server.exited;
  }
});
