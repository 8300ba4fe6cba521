/**
 * A signal before training starts — while a new dataset cache is built (tokenizer training takes
 * seconds to minutes) — stops the process within seconds, with one line, and leaves a cache that
 * the next run rebuilds or uses whole, never half.
 */
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { decodePacked, decodeTokenizerFile } from '../ml/data/dataset.ts';
import { tempDir } from './kit/helpers.ts';
import { scaled } from './kit/time-scale.mjs';
import { descendants, spawnTtc, waitGone, type Proc } from './kit/procs.ts';

/** How soon a signal must end the process: a few seconds, more on a loaded machine, far below the minutes it took. */
const STOP_MS = Math.min(30_000, scaled(5000));

/** A run whose data preparation lasts several seconds: a fresh cache and a large vocabulary to train. */
function writeConfig(dir: string): { file: string; cacheDir: string; outputDir: string } {
  const local = JSON.parse(fs.readFileSync('configs/local.json', 'utf8'));
  const cacheDir = path.join(dir, 'cache');
  const outputDir = path.join(dir, 'runs');
  const file = path.join(dir, 'run.json');
  fs.writeFileSync(file, JSON.stringify({
    ...local,
    outputDir,
    cacheDir,
    backend: 'cpu',
    model: { ...local.model, vocab: 16000 },
    train: { batchSize: 4, evalEvery: 1, checkpointEvery: 1 },
    data: { maxValidationSequences: 8 },
    budget: { kind: 'steps', steps: 1 },
  }));
  return { file, cacheDir, outputDir };
}

/** The exit status, or undefined when the process still runs after `ms` (it is then killed). */
async function exitWithin(p: Proc, ms: number): Promise<number | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const code = await Promise.race([p.exited, new Promise<undefined>((r) => {
    timer = setTimeout(() => r(undefined), ms);
  })]);
  clearTimeout(timer);
  if (code === undefined) p.kill('SIGKILL');
  return code;
}

/**
 * Sends SIGTERM and checks the process ends within STOP_MS with status 130 and one line saying so,
 * no stack trace, and its run not claimed complete (no summary, no checkpoint).
 */
async function stopsOnSigterm(t: ExecutionContext, p: Proc, outputDir: string): Promise<void> {
  const t0 = Date.now();
  p.kill('SIGTERM');
  const code = await exitWithin(p, scaled(120_000));
  const seconds = (Date.now() - t0) / 1000;
  const out = p.lines.join('\n');
  t.true(seconds * 1000 < STOP_MS, `stopped ${seconds.toFixed(1)} s after SIGTERM (limit ${STOP_MS / 1000} s)`);
  t.is(code, 130, out);
  t.is(p.lines.filter((l) => /interrupted/.test(l)).length, 1, out);
  t.regex(out, /interrupted \(SIGTERM\) while no training step runs: stopping now/);
  t.notRegex(out, /^\s+at /m, 'no stack trace');
  const [runId] = fs.readdirSync(outputDir);
  t.false(fs.existsSync(path.join(outputDir, runId!, 'summary.json')), 'the run is not claimed complete');
  t.false(fs.existsSync(path.join(outputDir, runId!, 'checkpoints')), 'no checkpoint');
}

const PREPARING = /dataset: training the tokenizer/;

test.serial('SIGTERM while ttc train trains the tokenizer of a new cache: out within seconds, one line, no half cache; the next run builds it whole', async (t) => {
  const dir = tempDir('sigterm-train');
  const { file, outputDir } = writeConfig(dir);
  const p = spawnTtc(['train', '--config', file]);
  await p.waitFor(PREPARING, 180_000);
  const entry = p.lines.map((l) => l.match(/dataset: building the cache entry (\S+)/)?.[1]).find(Boolean)!;
  await stopsOnSigterm(t, p, outputDir);
  // nothing of the cache entry was written, or only whole files
  for (const f of ['tokenizer.json', 'train.bin', 'validation.bin']) t.false(fs.existsSync(path.join(entry, f)), f);

  // A writer killed mid-write (SIGKILL) leaves a temporary file: it is never read, and the next build removes it once old.
  fs.mkdirSync(entry, { recursive: true });
  const stale = path.join(entry, 'train.bin.tmp-999999-0badcafe');
  fs.writeFileSync(stale, 'TTCSEQ01 cut short');
  const hourAgo = new Date(Date.now() - 3600_000);
  fs.utimesSync(stale, hourAgo, hourAgo);
  const again = spawnTtc(['train', '--config', file]);
  t.is(await exitWithin(again, scaled(600_000)), 0, again.lines.slice(-20).join('\n'));
  const log = again.lines.join('\n');
  t.regex(log, PREPARING, 'the tokenizer was trained anew, not read from a partial cache');
  t.notRegex(log, /dataset cache: .* (corrupt|missing)/);
  t.regex(log, /completed its budget: 1\/1 steps/);
  t.false(fs.existsSync(stale), 'the stale temporary file was removed');
  t.notThrows(() => decodeTokenizerFile(fs.readFileSync(path.join(entry, 'tokenizer.json'), 'utf8')));
  for (const f of ['train.bin', 'validation.bin']) t.notThrows(() => decodePacked(fs.readFileSync(path.join(entry, f)), 64), f);
});

test.serial('SIGTERM while the workers of ttc local --workers 2 train the tokenizer: it and its workers are gone within seconds', async (t) => {
  const dir = tempDir('sigterm-local');
  const { file, outputDir } = writeConfig(dir);
  const p = spawnTtc(['local', '--workers', '2', '--config', file]);
  await p.waitFor(/\[worker-\d\] .*dataset: training the tokenizer/, 180_000);
  const tree = descendants(p.child.pid!);
  t.true(tree.length >= 2, 'two workers run');
  await stopsOnSigterm(t, p, outputDir);
  t.deepEqual(await waitGone(tree, STOP_MS), [], 'no worker outlives it');
});
