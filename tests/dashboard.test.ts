/**
 * The live dashboard of a real run server (`ttc serve`) with two real workers: over HTTP, every
 * page, file, API call and report needs the read token (Bearer, or the cookie `?token=` trades it
 * for), answers with a strict CSP and no CORS, and never tells the secret; the API describes the
 * runs, their loss history and per-worker step splits. In a real headless Chromium (tests/kit/
 * browser.ts; skipped with the reason where there is none): the page loads with no error and no
 * request leaving loopback, its step and loss numbers grow while a short run trains, its charts and
 * per-worker timeline are drawn, and the finished run shows as done; docs/dashboard.png is its
 * screenshot, rewritten when TTC_WRITE_DOCS_SCREENSHOT=1.
 */
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TimeoutError, type Page } from 'puppeteer-core';
import { browserSkipReason, launchBrowser, openRecordedPage } from './kit/browser.ts';
import { spawnTtc, type Proc } from './kit/procs.ts';
import { tempDir, TEST_CACHE_DIR, TINY_MODEL } from './kit/helpers.ts';
import { scaled } from './kit/time-scale.mjs';
import { httpReadToken, normalizeSecret } from '../wire/auth.ts';
import http from 'node:http';
import { Dashboard } from '../coordinator/dashboard.ts';
import type { TrainingSample } from '../coordinator/metrics.ts';
import { silentLogger } from '../core/run/log.ts';
import type { RunRecord } from '../protocol/index.ts';

const SECRET = crypto.randomBytes(24).toString('base64');
const env = { TTC_SECRET: SECRET, TTC_SECRET_FILE: undefined, TTC_COORDINATOR: undefined };
const TOKEN = httpReadToken(normalizeSecret(SECRET));
const SCREENSHOT = fileURLToPath(new URL('../docs/dashboard.png', import.meta.url));

interface Cluster {
  dir: string;
  url: string;
  base: string;
  server: Proc;
  workers: Proc[];
}
let cluster: Cluster | undefined;

test.before(async () => {
  const dir = tempDir('dashboard');
  const server = spawnTtc(['serve', '--port', '0', '--output-dir', path.join(dir, 'runs')], env);
  const url = (await server.waitFor(/TTC_COORDINATOR_URL=(\S+)/))[1]!;
  const workers = [0, 1, 2].map((i) => spawnTtc(['worker', '--coordinator', url, '--name', `w${i}`, '--retry-seconds', String(scaled(120))], env));
  cluster = { dir, url, base: url.replace('ws://', 'http://'), server, workers };
});

test.after.always(async () => {
  if (!cluster) return;
  cluster.server.kill('SIGTERM');
  for (const w of cluster.workers) w.kill();
  await cluster.server.exited;
});

/** how long a page condition may take on a quiet machine (× the load scale) */
const LIMIT = 120_000;

/**
 * Waits until `fn` holds in the page, up to `ms` (what a quiet machine needs) × the load scale. One
 * puppeteer wait is one browser call, bounded by the protocol timeout (2 min): a long wait is made
 * of shorter ones.
 */
async function until<A extends unknown[]>(page: Page, ms: number, fn: (...args: A) => boolean, ...args: A): Promise<void> {
  const deadline = Date.now() + scaled(ms);
  for (;;) {
    try {
      await page.waitForFunction(fn as (...a: unknown[]) => boolean, { timeout: Math.max(1, Math.min(30_000, deadline - Date.now())), polling: 200 }, ...args);
      return;
    } catch (e) {
      if (!(e instanceof TimeoutError) || Date.now() >= deadline) throw e;
    }
  }
}

/** Submits a tiny training run of `steps` steps; returns its id. */
async function submit(name: string, steps: number, every: number): Promise<string> {
  const { dir, url } = cluster!;
  const cfg = path.join(dir, `${name}.json`);
  fs.writeFileSync(cfg, JSON.stringify({
    cacheDir: TEST_CACHE_DIR, backend: 'cpu', threads: 1, model: TINY_MODEL,
    train: { batchSize: 4, evalEvery: every, checkpointEvery: every }, data: { maxValidationSequences: 16 },
    budget: { kind: 'steps', steps }, dist: { minWorkers: 2, initialWorkers: 3, stepTimeoutSeconds: scaled(60) },
  }));
  const p = spawnTtc(['run', '--coordinator', url, '--config', cfg, '--detach'], env);
  if ((await p.exited) !== 0) throw new Error(`ttc run failed: ${p.lines.join('\n')}`);
  return p.lines.map((l) => /^TTC_RUN_ID=(\S+)/.exec(l)?.[1]).find(Boolean)!;
}

test.serial('the dashboard over HTTP: the read token (Bearer or the cookie ?token= sets), a strict CSP, no CORS, the API\'s runs, history and per-worker splits, no secret', async (t) => {
  const { base, server, url } = cluster!;
  const seen: string[] = []; // every response's headers and body: the secret must be in none
  const get = async (p: string, init: RequestInit = {}) => {
    const res = await fetch(`${base}${p}`, { redirect: 'manual', signal: AbortSignal.timeout(scaled(10_000)), ...init });
    const body = await res.text();
    seen.push(`${p} ${res.status} ${JSON.stringify([...res.headers])}\n${body}`);
    return { res, body };
  };
  const bearer = { authorization: `Bearer ${TOKEN}` };

  // `ttc serve` says where the dashboard is, never the token; `ttc token --url` prints the link.
  await server.waitFor(/dashboard: /);
  const hint = server.lines.find((l) => l.includes('dashboard: '))!;
  t.true(hint.includes(`dashboard: ${base}/dashboard `) && hint.includes(`ttc token --url ${url}`), hint);
  t.false(server.lines.some((l) => l.includes(TOKEN)));
  const link = spawnTtc(['token', '--url', url], env);
  t.is(await link.exited, 0);
  t.deepEqual(link.lines, [`${base}/dashboard?token=${TOKEN}`]);

  const runId = await submit('http', 12, 4);
  const port = new URL(base).port;

  // Without the token, a wrong one, another scheme, a wrong cookie: 401 and a one-line hint, nothing about the run.
  for (const p of ['/', '/dashboard', '/api/overview', `/api/runs/${runId}`, '/assets/dashboard.js', `/report/${runId}`]) {
    for (const headers of [{}, { authorization: `Bearer ${'0'.repeat(64)}` }, { authorization: `Basic ${TOKEN}` }, { cookie: `ttc_read_${port}=${TOKEN.slice(1)}` }, { cookie: `ttc_read_1=${TOKEN}` }] as Record<string, string>[]) {
      const { res, body } = await get(p, { headers });
      t.is(res.status, 401, `${p} ${JSON.stringify(headers)}`);
      t.is(body.trim().split('\n').length, 1);
      t.regex(body, /ttc token/);
      t.false(body.includes(runId));
    }
  }
  const wrong = await get(`/dashboard?token=${'f'.repeat(64)}`);
  t.is(wrong.res.status, 401);
  t.is(wrong.res.headers.get('set-cookie'), null);

  // ?token= once: a cookie (HttpOnly, SameSite=Strict, Path=/) and a redirect to the address without it.
  const signIn = await get(`/dashboard?token=${TOKEN}`);
  t.is(signIn.res.status, 303);
  t.is(signIn.res.headers.get('location'), '/dashboard');
  const setCookie = signIn.res.headers.get('set-cookie') ?? '';
  t.is(setCookie, `ttc_read_${port}=${TOKEN}; HttpOnly; SameSite=Strict; Path=/`);
  const cookie = { cookie: setCookie.split(';')[0]! };

  // The page: its script is a file (no inline script), a CSP of its own origin, nosniff, no CORS.
  const page = await get('/dashboard', { headers: { ...cookie, origin: 'http://evil.example' } });
  t.is(page.res.status, 200);
  t.regex(page.res.headers.get('content-type')!, /^text\/html/);
  const csp = page.res.headers.get('content-security-policy') ?? '';
  t.regex(csp, /default-src 'self'/);
  t.regex(csp, /script-src 'self'(;|$)/);
  t.notRegex(csp, /unsafe/);
  t.is(page.res.headers.get('x-content-type-options'), 'nosniff');
  t.is(page.res.headers.get('access-control-allow-origin'), null);
  t.regex(page.body, /<script src="\/assets\/dashboard\.js" defer><\/script>/);
  t.notRegex(page.body, /<script>|<script [^>]*>[^<]|on(click|load)=|https?:\/\//i);
  for (const [p, type] of [['/assets/dashboard.js', /^text\/javascript/], ['/assets/dashboard.css', /^text\/css/], ['/assets/favicon.svg', /^image\/svg\+xml/]] as const) {
    const a = await get(p, { headers: cookie });
    t.is(a.res.status, 200, p);
    t.regex(a.res.headers.get('content-type')!, type);
    t.is(a.res.headers.get('x-content-type-options'), 'nosniff');
  }
  t.is((await get('/', { headers: cookie })).res.status, 303);
  t.is((await get('/dashboard', { method: 'HEAD', headers: cookie })).res.status, 200);
  t.is((await get('/api/overview', { method: 'POST', headers: bearer })).res.status, 405);
  t.is((await get('/assets/../registry.ts', { headers: bearer })).res.status, 404);
  t.is((await get('/assets/index.html', { headers: bearer })).res.status, 404);
  t.is((await get('/api/runs/..%2F..%2Fetc', { headers: bearer })).res.status, 404);
  t.is((await get('/api/runs/nope', { headers: bearer })).res.status, 404);
  t.is((await get('/api/runs/%E0%A4%A', { headers: bearer })).res.status, 404, 'a malformed escape');
  t.is((await get('/report/%E0%A4%A', { headers: bearer })).res.status, 404);
  t.is((await get('/healthz')).res.status, 200, 'the probes need no token');
  t.is((await get('/metrics', { headers: cookie })).res.status, 200, 'the cookie reads /metrics too');

  // The API, while the run trains and once it is done.
  await server.waitFor(new RegExp(`run ${runId}: done`), scaled(180_000));
  const overview = JSON.parse((await get('/api/overview', { headers: bearer })).body);
  t.is(overview.kind, 'server');
  t.deepEqual(overview.workers.map((w: { name: string }) => w.name).sort(), ['w0', 'w1', 'w2']);
  const row = overview.runs.find((r: { id: string }) => r.id === runId);
  t.like(row, { id: runId, kind: 'train', state: 'done', step: 12, totalSteps: 12, budgetFraction: 1, report: false });
  t.false('dir' in row, 'no server paths');
  t.true(Number.isFinite(row.trainLoss));

  const detail = JSON.parse((await get(`/api/runs/${runId}`, { headers: cookie })).body);
  t.like(detail, { id: runId, kind: 'train', state: 'done', failures: [], reformations: 0, report: null });
  // the evaluation before the first step, then one row per step
  t.deepEqual(detail.history.map((r: { step: number }) => r.step), Array.from({ length: 13 }, (_, i) => i));
  const steps = detail.history.slice(1);
  for (const k of ['flops', 'seconds', 'tokens', 'trainLoss', 'tokensPerSecond']) t.true(steps.every((r: Record<string, number>) => Number.isFinite(r[k])), k);
  t.true(Number.isFinite(detail.history[0].valLoss));
  t.true(detail.history.some((r: { valLoss: number | null }) => r.valLoss !== null));
  t.is(detail.view.step, 12);
  t.is(detail.summary.completed, true);
  t.is(detail.splits.length, 12);
  const last = detail.splits.at(-1);
  t.is(last.step, 12);
  t.deepEqual(last.ranks.map((r: { rank: number; name: string }) => r.rank), [0, 1, 2]);
  t.deepEqual(last.ranks.map((r: { name: string }) => r.name).sort(), ['w0', 'w1', 'w2']);
  for (const r of last.ranks) for (const k of ['computeMs', 'readBackMs', 'allReduceMs', 'updateMs']) t.true(r[k] >= 0 && Number.isFinite(r[k]), `${k} ${r[k]}`);
  t.like(detail.events[0], { kind: 'formed', fromStep: 0 });
  t.deepEqual([...detail.events[0].workers].sort(), ['w0', 'w1', 'w2']);

  // A report in the run's directory is served sandboxed and listed.
  fs.writeFileSync(path.join(cluster!.dir, 'runs', runId, 'report.html'), '<!doctype html><title>r</title><style>p{color:red}</style><p>the report</p>');
  const report = await get(`/report/${runId}`, { headers: cookie });
  t.is(report.res.status, 200);
  t.regex(report.body, /the report/);
  t.regex(report.res.headers.get('content-security-policy') ?? '', /^sandbox /);
  t.is(JSON.parse((await get(`/api/runs/${runId}`, { headers: bearer })).body).report, `/report/${runId}`);

  // The secret is in no response; the token only in the cookie the sign-in sets.
  for (const s of seen) t.false(s.includes(SECRET), s.slice(0, 200));
  t.deepEqual(seen.filter((s) => s.includes(TOKEN)).map((s) => s.split(' ')[0]), [`/dashboard?token=${TOKEN}`]);
});

const skip = browserSkipReason();
const browserTitle = 'the dashboard in headless Chromium: loads with no error and nothing from the network, its step and loss grow while a run trains, charts and the per-worker timeline are drawn, the finished run shows as done';
const sweepTitle = 'a sweep in headless Chromium: its stage, its members, the live member\'s charts, a member picked by a click, the report link; no page error';
if (skip) {
  test.skip(`${browserTitle} (${skip})`, () => {});
  test.skip(`${sweepTitle} (${skip})`, () => {});
} else {
  test.serial(sweepTitle, async (t) => {
    // A sweep as the run server would show it, without training: member directories on disk and a live member's sample.
    const dir = tempDir('dashboard-sweep');
    const row = (step: number) => JSON.stringify({ step, tokens: 100 * step, flops: 1e8 * step, seconds: step / 10, wallSeconds: step / 10, lr: 1e-3, trainLoss: 7 - step / 50, ...(step % 5 === 0 ? { valLoss: 7 - step / 45 } : {}), tokensPerSecond: 1000 });
    const member = (id: string, steps: number, summary?: object) => {
      const m = path.join(dir, 'members', id);
      fs.mkdirSync(m, { recursive: true });
      fs.writeFileSync(path.join(m, 'config.json'), '{}');
      fs.writeFileSync(path.join(m, 'metrics.jsonl'), Array.from({ length: steps }, (_, i) => `${row(i + 1)}\n`).join(''));
      if (summary) fs.writeFileSync(path.join(m, 'summary.json'), JSON.stringify(summary));
      return m;
    };
    member('L1-d32_1e9', 20, { completed: true, steps: 20, totalSteps: 20, finalValLoss: 6.5, flopsUsed: 2e9 });
    const live = member('L2-d32_1e9', 12);
    fs.writeFileSync(path.join(dir, 'report.html'), '<!doctype html><p>an earlier report</p>');
    const record: RunRecord = { id: 'sw1', kind: 'sweep', dir, state: 'running', submittedAt: new Date().toISOString(), stage: 'pretraining member 2/4 L2-d32_1e9', stageDone: 1, stageTotal: 4 };
    const ranks = (k: number) => ['a', 'b'].map((name, rank) => ({ rank, name, computeMs: 20 + k, readBackMs: 3, allReduceMs: 5 + rank, updateMs: 4 }));
    const sample: TrainingSample = {
      view: {
        runId: 'L2-d32_1e9', runDir: live, phase: 'training', formation: 1, uptimeSeconds: 9, workers: [], step: 12, totalSteps: 20,
        budget: { kind: 'flops', flops: 2e9, seconds: 0, steps: 0, calibrationSteps: 0 }, budgetFraction: 0.6, etaSeconds: 4, flopsUsed: 1.2e9,
        secondsUsed: 1.2, tokensSeen: 1200, trainLoss: 6.8, valLoss: 6.7, tokensPerSecond: 1000, lastCheckpointStep: 10, failures: [],
      },
      timing: undefined, stepSeconds: 0.04, reformations: 0,
      timeline: { splits: Array.from({ length: 12 }, (_, k) => ({ step: k + 1, formation: 1, ranks: ranks(k) })), events: [{ at: new Date().toISOString(), kind: 'formed', formation: 1, workers: ['a', 'b'], fromStep: 0 }] },
    };
    const dash = new Dashboard({ readToken: Buffer.from(TOKEN), log: silentLogger, secure: false, source: { kind: 'server', records: () => [record], trainings: () => [sample], workers: () => [] } });
    const server = http.createServer((req, res) => dash.handle(req, res, new URL(req.url ?? '/', 'http://x')));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const browser = await launchBrowser();
    try {
      const { page, external, errors } = await openRecordedPage(browser);
      page.setDefaultTimeout(scaled(LIMIT));
      await page.goto(`${base}/dashboard?token=${TOKEN}`, { waitUntil: 'load' });
      await until(page, LIMIT, () => document.getElementById('sweep-title')?.textContent === 'sw1' && document.querySelectorAll('#members tbody tr').length === 2);
      t.is(await page.$eval('#sweep-stage', (e) => e.textContent), 'pretraining member 2/4 L2-d32_1e9 — 1 of 4');
      t.deepEqual(await page.$$eval('#members tbody tr .badge', (es) => es.map((e) => e.textContent)), ['done', 'running']);
      t.is(await page.$eval('#sweep-report', (e) => (e as HTMLAnchorElement).hidden ? null : e.getAttribute('href')), '/report/sw1');
      // the live member's charts under the sweep
      await until(page, LIMIT, () => document.getElementById('run-title')?.textContent === 'sw1/L2-d32_1e9');
      t.is(await page.$eval('#stat-step', (e) => e.textContent), '12 / 20');
      t.is(await page.$eval('#stat-eta', (e) => e.textContent), '4 s');
      t.is(await page.$eval('#loss-chart polyline.train', (e) => e.getAttribute('data-points')), '12');
      t.true((await page.$$('#timeline rect.seg-readback')).length >= 10);
      // a click on the finished member shows it
      await page.click('#members tr[data-member="L1-d32_1e9"]');
      await until(page, LIMIT, () => document.getElementById('run-title')?.textContent === 'sw1/L1-d32_1e9' && document.getElementById('run-state')?.dataset.state === 'done');
      t.is(await page.$eval('#stat-step', (e) => e.textContent), '20 / 20');
      t.is(await page.$eval('#stat-val', (e) => e.textContent), '6.5000');
      t.true(page.url().endsWith('#run=sw1%2FL1-d32_1e9'), page.url());
      t.false(await page.$eval('#timeline-empty', (e) => (e as HTMLElement).hidden), 'no timeline kept for it: said so');
      // the report opens in its own sandbox
      const report = await page.goto(`${base}/report/sw1`);
      t.regex(report?.headers()['content-security-policy'] ?? '', /^sandbox/);
      t.deepEqual(external, []);
      t.deepEqual(errors, []);
    } finally {
      await browser.close();
      server.close();
    }
  });

  test.serial(browserTitle, async (t) => {
    const { base, server } = cluster!;
    const STEPS = 200;
    const browser = await launchBrowser();
    try {
      const { page, external, errors } = await openRecordedPage(browser);
      page.setDefaultTimeout(scaled(LIMIT));
      let ok = true;
      const check = (cond: boolean, what: string) => {
        t.true(cond, what);
        ok &&= cond;
      };

      // Signing in with the link `ttc token --url` prints: the token leaves the address bar at once.
      const res = await page.goto(`${base}/dashboard?token=${TOKEN}`, { waitUntil: 'load' });
      check(res?.status() === 200, `status ${res?.status()}`);
      check(page.url() === `${base}/dashboard`, page.url());
      await until(page, LIMIT, () => Number(document.body.dataset.updates ?? 0) >= 1);
      const cookies = await browser.cookies();
      check(cookies.some((c) => c.httpOnly && c.sameSite === 'Strict' && c.value === TOKEN), JSON.stringify(cookies.map((c) => [c.name, c.httpOnly, c.sameSite])));
      check(!(await page.evaluate(() => document.cookie)).includes(TOKEN), 'the cookie is HttpOnly');

      const runId = await submit('browser', STEPS, 10);
      // The page follows the live run: its step while training, then a later one.
      const stepOnPage = () => page.$eval('#stat-step', (e) => Number((e as HTMLElement).dataset.value));
      await until(page, 3 * LIMIT, (id, total) => {
        const title = document.getElementById('run-title')?.textContent;
        const step = Number(document.getElementById('stat-step')?.dataset.value);
        return title === id && document.getElementById('run-state')?.dataset.state === 'running' && step >= 1 && step < total;
      }, runId, STEPS);
      const first = await stepOnPage();
      const firstLoss = Number(await page.$eval('#stat-loss', (e) => e.textContent));
      check(Number.isFinite(firstLoss) && firstLoss > 0, `loss on the page ${firstLoss}`);
      await until(page, LIMIT, (s) => Number(document.getElementById('stat-step')?.dataset.value) > s, first);
      const second = await stepOnPage();
      check(second > first && second < STEPS, `${first} → ${second}`);

      // A worker killed mid-run: the page lists the failure and the re-formed ring of the other two, and the run goes on.
      cluster!.workers[2]!.kill('SIGKILL');
      await until(page, LIMIT, () => {
        const items = [...document.querySelectorAll('#events li')].map((e) => e.textContent ?? '');
        return items.some((x) => /failure: .*w2/.test(x)) && items.some((x) => /ring formation \d+: 2 worker\(s\) \(w[01], w[01]\)/.test(x));
      });
      const restartedAt = await stepOnPage();
      await until(page, LIMIT, (s) => Number(document.getElementById('stat-step')?.dataset.value) > s, restartedAt);
      const rows = () => page.$eval('#loss-chart polyline.train', (e) => Number(e.getAttribute('data-points')));
      await until(page, LIMIT, () => Number(document.querySelector('#loss-chart polyline.train')?.getAttribute('data-points') ?? 0) >= 2);
      check((await rows()) >= 2, 'the loss line has points');
      await until(page, LIMIT, () => document.querySelectorAll('#timeline rect.seg-compute').length >= 2);
      check(await page.$eval('#workers', (e) => /w0/.test(e.textContent ?? '') && /w1/.test(e.textContent ?? '') && !/w2/.test(e.textContent ?? '')), 'the workers left are listed');
      check(await page.$eval('#events', (e) => /ring formation \d+: 3 worker/.test(e.textContent ?? '')), 'the first ring formation is listed');
      check((await page.$$('#loss-chart line.reform')).length >= 1, 'the loss chart marks where the re-formed ring restarted');

      // Done: the page says so, at the final step, with the budget spent.
      await server.waitFor(new RegExp(`run ${runId}: done`), scaled(300_000));
      await until(page, LIMIT, (total) => document.getElementById('run-state')?.dataset.state === 'done' && Number(document.getElementById('stat-step')?.dataset.value) === total, STEPS);
      check((await page.$eval('#stat-budget', (e) => e.textContent)) === '100.0 %', 'budget used');
      // the timeline's last steps are the re-formed ring's: two workers, every kind of segment
      await until(page, LIMIT, () => document.querySelectorAll('#timeline rect.seg-compute').length >= 10);
      for (const seg of ['compute', 'readback', 'allreduce', 'update']) check((await page.$$(`#timeline rect.seg-${seg}`)).length >= 1, `${seg} segments`);
      const timelineWorkers = await page.$$eval('#timeline rect.seg', (rs) => [...new Set(rs.map((r) => r.getAttribute('data-worker')))].sort());
      check(JSON.stringify(timelineWorkers) === '["w0","w1"]', `timeline rows after the re-formation ${timelineWorkers}`);
      check((await page.$eval('#stat-eta', (e) => e.textContent)) === 'done', 'ETA');
      check((await page.$eval(`#runs tr[data-run="${runId}"] .badge`, (e) => e.textContent)) === 'done', 'the run list says done');
      const finalLoss = Number(await page.$eval('#stat-loss', (e) => e.textContent));
      check(finalLoss < firstLoss, `loss ${firstLoss} → ${finalLoss}`);
      // the x axis choice redraws the chart
      await page.click('.axis-choice button[data-x="flops"]');
      await until(page, LIMIT, () => [...document.querySelectorAll('#loss-chart text')].some((e) => e.textContent === 'FLOPs'));
      await page.click('.axis-choice button[data-x="step"]');

      check(external.length === 0, `requests leaving loopback: ${external.join(', ')}`);
      check(errors.length === 0, `page errors: ${errors.join('; ')}`);
      const shot = await page.screenshot({ fullPage: true, type: 'png' });
      // the committed screenshot is rewritten only on request, so a test run leaves the checkout clean
      const keep = ok && process.env.TTC_WRITE_DOCS_SCREENSHOT === '1';
      if (keep) fs.writeFileSync(SCREENSHOT, shot);
      t.log(`steps seen on the page: ${first} → ${second}, w2 killed, ${restartedAt} once the page showed the re-formed ring → ${STEPS}${keep ? `; screenshot ${path.relative(process.cwd(), SCREENSHOT)}` : ''}`);
    } finally {
      await browser.close();
    }
  });
}
