// Runs the ava suite and ends with the plain line "N passed, N failed[, N skipped]" that CI reads.
//
// Each test file is its own `ava --tap <file>` run (as many at once as ava would run files:
// --concurrency, default one per CPU), so a file that hangs, exits or crashes — or crashes ava's
// TAP reporter, as its global timeout and an unexpected process.exit() do in ava 7 — costs only
// that file. The counts come from a ledger the file's worker writes as it goes
// (tests/kit/ava-ledger.mjs): the tests ava selected, and how each ended. A selected test that
// never ended counts as failed, so the closing line counts every test. A test registered as
// skipped (something this machine lacks) counts as skipped, never as passed.
//
// Under load every limit grows: each file gets TTC_TEST_TIME_SCALE (tests/kit/time-scale.mjs,
// from the load average when it starts), which the kit's waits use, and ava's inactivity
// timeout (package.json "timeout") is multiplied by it.
//
// `node tests/run.mjs [--unit] [--concurrency N] [ava options] [files or directories]`:
// no files means every tests/**/*.test.ts; `--unit` means tests/unit/ (no child processes, under
// a minute: `npm run test:unit`). Exit code 0 only when no test failed and every ava run exited 0.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { timeScale } from './kit/time-scale.mjs';

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
process.chdir(ROOT);
const AVA = path.join(ROOT, 'node_modules/ava/entrypoints/cli.mjs');
const LEDGER_HOOK = pathToFileURL(path.join(ROOT, 'tests/kit/ava-ledger.mjs')).href;
// ava options that take a value (passed on to every file's run)
const WITH_VALUE = new Set(['--config', '--match', '-m', '--timeout', '-T', '--node-arguments', '--concurrency', '-c']);

const { files, avaArgs, nodeArgs, concurrency, timeoutGiven, matchGiven } = parseArgs(process.argv.slice(2));
const avaTimeoutMs = parseDuration(packageAvaTimeout()) ?? 5 * 60_000;
const ledgerDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ttc-test-ledger-'));
const running = new Set();
const totals = { passed: 0, failed: 0, skipped: 0 };
let worstExit = 0;

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const child of running) killGroup(child);
    console.log(`interrupted (${sig}); ${summary()}`);
    process.exit(130);
  });
}

if (files.length === 0) {
  console.log('no test files found');
  totals.failed = 1;
} else {
  let next = 0;
  const lane = async () => {
    while (next < files.length) {
      const i = next++;
      const r = await runFile(files[i], i);
      totals.passed += r.passed;
      totals.failed += r.failed;
      totals.skipped += r.skipped;
      if (r.exit !== 0) worstExit = r.exit;
      process.stdout.write(r.report);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, lane));
}
fs.rmSync(ledgerDir, { recursive: true, force: true });
console.log(summary());
process.exit(totals.failed > 0 ? (worstExit || 1) : worstExit);

function summary() {
  return `${totals.passed} passed, ${totals.failed} failed${totals.skipped ? `, ${totals.skipped} skipped` : ''}`;
}

/** One file's ava run; resolves with its counts and its output (printed as one block, since files run side by side). */
function runFile(file, index) {
  const scale = process.env.TTC_TEST_TIME_SCALE ?? timeScale().toFixed(2);
  const timeoutMs = Math.round(avaTimeoutMs * Number(scale));
  const ledger = path.join(ledgerDir, `${index}.jsonl`);
  const started = Date.now();
  const args = [AVA, '--tap', `--node-arguments=--import=${LEDGER_HOOK}${nodeArgs}`, ...(timeoutGiven ? [] : [`--timeout=${timeoutMs}ms`]), ...avaArgs, file];
  // its own process group, so that a run the watchdog ends takes its workers and their children along
  const child = spawn(process.execPath, args, {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TTC_TEST_LEDGER: ledger, TTC_TEST_TIME_SCALE: scale },
  });
  running.add(child);
  const out = [];
  let tap = '';
  let lastOutput = Date.now();
  child.stdout.on('data', (d) => { out.push(d); tap += d; lastOutput = Date.now(); });
  child.stderr.on('data', (d) => { out.push(d); lastOutput = Date.now(); });
  // Backstop for an ava run that wedges: ava itself gives up after timeoutMs without a test ending
  // (t.timeout() may stretch that), so twice that plus a minute of silence means it is stuck.
  let watchdogFired = false;
  const watchdog = setInterval(() => {
    if (Date.now() - lastOutput > 2 * timeoutMs + 60_000) {
      watchdogFired = true;
      killGroup(child);
    }
  }, 5000);
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearInterval(watchdog);
      running.delete(child);
      killGroup(child); // whatever the file's processes left behind
      const counts = countFile(ledger, tap, code ?? 1);
      const exit = counts.noneSelected ? 0 : code ?? 1;
      const notes = [];
      for (const title of counts.unfinished) notes.push(`not ok - ${file} › ${title} # never finished: the file's run timed out, exited or crashed`);
      if (watchdogFired) notes.push(`# ${file}: no output for ${Math.round((2 * timeoutMs + 60_000) / 1000)} s: killed`);
      else if (signal) notes.push(`# ${file}: ava ended by ${signal}`);
      if (counts.fileFailure) notes.push(`not ok - ${file} # ava exited ${exit} without a failed test: counted as one failure`);
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      notes.push(`# ${file}: ${counts.passed} passed, ${counts.failed} failed${counts.skipped ? `, ${counts.skipped} skipped` : ''} (${secs} s, time scale ${scale})`);
      resolve({ ...counts, exit, report: `# ${file}\n${Buffer.concat(out).toString()}${notes.join('\n')}\n` });
    });
  });
}

/**
 * A file's counts from its ledger: tests selected as skipped or todo are skipped, the others
 * passed, failed, or (never ended) failed. Without a ledger (ava crashed before selecting any
 * test, or workers are threads) the TAP lines count, as before. A failed ava run with no failed
 * test (a crash outside the tests, a failed after-hook) counts as one failure, except when --match
 * selected none of the file's tests (ava exits 1 then).
 */
function countFile(ledger, tap, exit) {
  const state = new Map();
  const lines = fs.existsSync(ledger) ? fs.readFileSync(ledger, 'utf8').split('\n').filter(Boolean) : [];
  for (const line of lines) {
    let e;
    try { e = JSON.parse(line); } catch { continue; } // a line cut short by a kill
    if (e.type === 'selected-test') state.set(e.title, e.skip || e.todo ? 'skipped' : 'pending');
    else if (e.type === 'test-passed') state.set(e.title, 'passed');
    else if (e.type === 'test-failed') state.set(e.title, 'failed');
  }
  const c = { passed: 0, failed: 0, skipped: 0, unfinished: [], fileFailure: false, noneSelected: false };
  if (state.size > 0) {
    for (const [title, s] of state) {
      if (s === 'pending') { c.failed += 1; c.unfinished.push(title); } else c[s] += 1;
    }
  } else {
    for (const line of tap.split('\n')) {
      if (/^ok \d+/.test(line)) c[/# SKIP/i.test(line) ? 'skipped' : 'passed'] += 1;
      else if (/^not ok \d+/.test(line)) c[/# TODO/i.test(line) ? 'skipped' : 'failed'] += 1;
    }
  }
  if (matchGiven && state.size === 0 && c.passed + c.failed + c.skipped === 0 && /^1\.\.0$/m.test(tap)) c.noneSelected = true;
  else if (exit !== 0 && c.failed === 0) { c.failed = 1; c.fileFailure = true; }
  return c;
}

function killGroup(child) {
  try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
}

function parseArgs(argv) {
  const avaArgs = [];
  const paths = [];
  let concurrency = Math.max(1, os.cpus().length); // ava's default
  let unit = false;
  let timeoutGiven = false;
  let matchGiven = false;
  let nodeArgs = ''; // the caller's --node-arguments, after the ledger's
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    if (flag === '--unit') unit = true;
    else if (WITH_VALUE.has(flag)) {
      const value = inline ?? argv[++i];
      if (flag === '--concurrency' || flag === '-c') concurrency = Math.max(1, Number(value) || 1);
      else if (flag === '--node-arguments') nodeArgs += ` ${value}`;
      else avaArgs.push(flag, value);
      if (flag === '--timeout' || flag === '-T') timeoutGiven = true;
      if (flag === '--match' || flag === '-m') matchGiven = true;
    } else if (a.startsWith('-')) avaArgs.push(a);
    else paths.push(a);
  }
  const roots = paths.length > 0 ? paths : [unit ? 'tests/unit' : 'tests'];
  const files = roots.flatMap((p) => (fs.statSync(p, { throwIfNoEntry: false })?.isDirectory() ? testFiles(p) : [p]));
  return { files, avaArgs, nodeArgs, concurrency, timeoutGiven, matchGiven };
}

/** *.test.ts under a directory, in ava's order (sorted paths). */
function testFiles(dir) {
  return fs.readdirSync(dir, { recursive: true })
    .map((f) => path.join(dir, f))
    .filter((f) => f.endsWith('.test.ts') && !f.split(path.sep).includes('node_modules'))
    .sort();
}

function packageAvaTimeout() {
  return JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).ava?.timeout;
}

/** "5m", "90s", "1500ms" or a number of ms → ms. */
function parseDuration(v) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(String(v ?? '').trim());
  if (!m) return undefined;
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] ?? 'ms'];
}
