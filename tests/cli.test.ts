import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { tempDir, TEST_CACHE_DIR, TINY_MODEL } from './kit/helpers.ts';

const run = promisify(execFile);

async function ttc(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const merged: Record<string, string | undefined> = { ...process.env, ...env };
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  try {
    const r = await run(process.execPath, ['bin/ttc.mjs', ...args], { timeout: 240_000, env: merged as NodeJS.ProcessEnv });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

test('ttc train runs a real budgeted run in a child process and fills the run directory', async (t) => {
  const out = tempDir('cli');
  const cfg = path.join(out, 'cli.json');
  fs.writeFileSync(
    cfg,
    JSON.stringify({
      outputDir: out,
      cacheDir: TEST_CACHE_DIR,
      backend: 'auto',
      model: TINY_MODEL,
      train: { batchSize: 4, evalEvery: 3, checkpointEvery: 3 },
      data: { maxValidationSequences: 16 },
      budget: { kind: 'steps', steps: 6 },
    }),
  );
  const r = await ttc(['train', '--config', cfg, '--set', 'seed=7']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /completed its budget: 6\/6 steps/);
  t.regex(r.stdout, /validation loss \d+\.\d+/);
  t.regex(r.stderr, /backend: running on/);
  const runDir = r.stdout.match(/results: (\S+)\//)![1];
  for (const f of ['config.json', 'metrics.jsonl', 'summary.json', 'train.log']) t.true(fs.existsSync(path.join(runDir, f)), f);
  t.is(JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8')).seed, 7);
  t.true(fs.readdirSync(path.join(runDir, 'checkpoints')).includes('step-00000006'));
});

test('ttc train refuses a bad config value naming the field, and an unknown command', async (t) => {
  const out = tempDir('cli-bad');
  const cfg = path.join(out, 'bad.json');
  fs.writeFileSync(cfg, JSON.stringify({ outputDir: out, model: { heads: 0 } }));
  const r = await ttc(['train', '--config', cfg]);
  t.is(r.code, 1);
  t.regex(r.stderr, /model\.heads: expected a positive integer, got 0/);
  t.notRegex(r.stderr, /at .*\.ts:\d+/, 'no stack trace for a config error');
  t.deepEqual(fs.readdirSync(out), ['bad.json'], 'nothing was created');
  const u = await ttc(['frobnicate']);
  t.is(u.code, 2);
  t.regex(u.stderr, /unknown command "frobnicate"/);
  // A missing flag: the message and the usage, no stack trace.
  for (const args of [['report', '--run', 'x'], ['worker'], ['cancel', '--coordinator', 'ws://127.0.0.1:1']]) {
    const m = await ttc(args, { TTC_COORDINATOR: undefined });
    t.is(m.code, 1, args.join(' '));
    t.regex(m.stderr, new RegExp(`^ttc ${args[0]}: --(coordinator|run) .*is required\\n\\nttc ${args[0]} `), args.join(' '));
    t.notRegex(m.stderr, /at .*\.ts:\d+/, 'no stack trace for a usage error');
  }
});
