import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { tempDir, TEST_CACHE_DIR, TINY_MODEL } from './kit/helpers.ts';
import { scaled } from './kit/time-scale.mjs';

const run = promisify(execFile);

async function ttc(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const merged: Record<string, string | undefined> = { ...process.env, ...env };
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  try {
    const r = await run(process.execPath, ['bin/ttc.mjs', ...args], { timeout: scaled(240_000), env: merged as NodeJS.ProcessEnv });
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

test('commands load lazily: `ttc status` loads no TensorFlow.js (`ttc train --help` does, so the trace sees it)', async (t) => {
  const dir = tempDir('cli-lazy');
  const traced = async (args: string[]) => {
    const file = path.join(dir, `${args[0]}.txt`);
    const r = await run(process.execPath, ['--import', './tests/kit/trace-imports.mjs', 'bin/ttc.mjs', ...args], { timeout: scaled(120_000), env: { ...process.env, TTC_TRACE_IMPORTS: file, TTC_SECRET: 'a-secret-of-at-least-16-bytes' } }).catch((e: { code: number; stderr: string }) => e);
    return { r, urls: fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) };
  };
  const status = await traced(['status', '--coordinator', '127.0.0.1:1']);
  t.regex(String(status.r.stderr), /^ttc status: coordinator at ws:\/\/127\.0\.0\.1:1 unreachable/m);
  t.true(status.urls.some((u) => u.endsWith('/cli/commands/status.ts')), 'the trace saw the command module');
  t.deepEqual(status.urls.filter((u) => /@tensorflow|\/ml\//.test(u)), [], "ttc status loaded TensorFlow.js or ml/");
  t.false(status.urls.some((u) => /\/cli\/commands\/(train|sweep|local)\.ts$/.test(u)), 'only the command that runs is loaded');
  const train = await traced(['train', '--help']);
  t.true(train.urls.some((u) => u.includes('@tensorflow/tfjs')), 'ttc train loads TensorFlow.js');
});

test('every command\'s usage begins with its synopsis in the command list, and `--help` prints it', async (t) => {
  const { commands } = await import('../cli/main.ts');
  for (const [name, c] of Object.entries(commands)) {
    t.is((await c.load()).usage.split('\n')[0], c.synopsis, name);
  }
  const h = await ttc(['serve', '--help']);
  t.is(h.code, 0);
  t.true(h.stdout.startsWith(commands.serve!.synopsis));
});

test('expected failures print one coded message and no stack: a missing run or sweep directory, an unreachable coordinator, an unknown flag', async (t) => {
  for (const [args, message] of [
    [['train', '--resume', '/nonexistent/run'], /^ttc train: \/nonexistent\/run is not a ttc run directory \(no config\.json\)$/m],
    [['sweep', '--resume', '/nonexistent/sweep'], /^ttc sweep: \/nonexistent\/sweep is not a sweep directory \(no sweep\.json\)$/m],
    [['local', '--workers', '0', '--config', 'x.json'], /^ttc local: --workers: expected an integer 1\.\.64, got "0"$/m],
    [['train', '--config', 'x.json', '--frobnicate'], /^ttc train: Unknown option '--frobnicate'/m],
    [['status', '--coordinator', 'ftp://x:1'], /^ttc status: --coordinator: expected ws:\/\/, wss:\/\/, http:\/\/ or https:\/\//m],
  ] as const) {
    const r = await ttc([...args], { TTC_SECRET: 'a-secret-of-at-least-16-bytes' });
    t.is(r.code, 1, args.join(' '));
    t.regex(r.stderr, message, args.join(' '));
    t.notRegex(r.stderr, /\n\s+at /, `no stack trace: ${args.join(' ')}`);
  }
});

/** `ttc <args>` is refused up front: exit 1, one line on stderr matching `message`, and `dir` holds what it held before. */
async function refusedUpFront(t: import('ava').ExecutionContext, dir: string, args: string[], message: RegExp): Promise<void> {
  const before = fs.readdirSync(dir).sort();
  const r = await ttc(args, { TTC_SECRET: 'a-secret-of-at-least-16-bytes' });
  t.is(r.code, 1, args.join(' '));
  t.deepEqual(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  t.regex(r.stderr.trim(), message, args.join(' '));
  t.deepEqual(fs.readdirSync(dir).sort(), before, `nothing written: ${args.join(' ')}`);
}

test('--set __proto__.x=1 and config files with __proto__ / constructor keys are refused in one line, nothing written', async (t) => {
  const out = tempDir('cli-proto');
  const setDirs = ['--set', `outputDir=${path.join(out, 'runs')}`, '--set', `cacheDir=${path.join(out, 'cache')}`];
  await refusedUpFront(t, out, ['train', '--config', 'configs/local.json', ...setDirs, '--set', '__proto__.x=1'], /^ttc train: --set __proto__\.x=1: key "__proto__" is not allowed \(__proto__, constructor and prototype are never config fields\)$/);
  const ctor = path.join(out, 'ctor.json');
  fs.writeFileSync(ctor, `{ "outputDir": ${JSON.stringify(path.join(out, 'runs'))}, "model": { "layers": 1, "constructor": { "prototype": { "x": 1 } } } }`);
  await refusedUpFront(t, out, ['train', '--config', ctor], /^ttc train: config file .*ctor\.json: key "model\.constructor" is not allowed/);
  const proto = path.join(out, 'proto.json');
  fs.writeFileSync(proto, `{ "__proto__": { "outputDir": "/tmp" }, "outputDir": ${JSON.stringify(path.join(out, 'runs'))} }`);
  await refusedUpFront(t, out, ['local', '--config', proto], /^ttc local: config file .*proto\.json: key "__proto__" is not allowed/);
});

test('a runId that is a path (../escape, /abs, a/b, ..) is refused in one line; no directory inside or outside outputDir', async (t) => {
  const out = tempDir('cli-runid');
  const cfg = path.join(out, 'cfg.json');
  fs.writeFileSync(cfg, JSON.stringify({ outputDir: path.join(out, 'nest', 'runs'), cacheDir: path.join(out, 'nest', 'cache'), model: TINY_MODEL, budget: { kind: 'steps', steps: 1 } }));
  for (const id of ['../escape', '/abs', 'a/b', '..']) {
    await refusedUpFront(t, out, ['train', '--config', cfg, '--set', `runId=${id}`], new RegExp(`^ttc train: invalid config: runId: expected a run id \\(.*\\), got "${id.replace(/[./]/g, (c) => `\\${c}`)}"$`));
  }
  t.false(fs.existsSync('/abs'));
  await refusedUpFront(t, out, ['coordinator', '--config', cfg, '--port', '0', '--set', 'runId=../escape'], /^ttc coordinator: invalid config: runId: expected a run id/);
  // flags that name a run of a run server are run ids too (checked before connecting)
  await refusedUpFront(t, out, ['cancel', '--coordinator', '127.0.0.1:1', '--run', '../escape'], /^ttc cancel: --run: expected a run id \(.*\), got "\.\.\/escape"$/);
});

test('sizes past their bounds, and runs that cannot fit this machine, are refused by every command before anything is written', async (t) => {
  const out = tempDir('cli-sizes');
  const setDirs = ['--set', `outputDir=${path.join(out, 'runs')}`, '--set', `cacheDir=${path.join(out, 'cache')}`];
  await refusedUpFront(t, out, ['train', '--config', 'configs/local.json', ...setDirs, '--set', 'model.layers=1e9'], /^ttc train: invalid config: model\.layers: expected a positive integer <= 1,024, got 1000000000$/);
  // the issue's values at once: every field named (one line each)
  const all = ['model.hidden=1e6', 'model.seqLen=1e7', 'model.vocab=1e9', 'budget.steps=1e20', 'train.batchSize=1e9', 'optimizer.lr=1e308'];
  const r = await ttc(['train', '--config', 'configs/local.json', ...setDirs, ...all.flatMap((s) => ['--set', s])]);
  t.is(r.code, 1);
  for (const s of all) t.true(r.stderr.includes(`${s.split('=')[0]}: expected`), `${s}: ${r.stderr}`);
  t.deepEqual(fs.readdirSync(out), [], 'nothing written');
  // a step whose attention scores need hundreds of GiB: 2 local workers + the coordinator, every member of a sweep
  const long = { outputDir: path.join(out, 'runs'), cacheDir: path.join(out, 'cache'), backend: 'cpu', model: { ...TINY_MODEL, heads: 1, seqLen: 8192 }, train: { batchSize: 64 }, budget: { kind: 'steps', steps: 1 } };
  const cfg = path.join(out, 'long.json');
  fs.writeFileSync(cfg, JSON.stringify(long));
  const over = /needs ~\d+\.\d (GiB|TiB) of host memory \(per worker: parameters \+ optimizer state ~\d+ MiB, the step's tensors ~\d+\.\d (GiB|TiB); the coordinator's restart point \(weights \+ AdamW moments\) ~\d+ MiB\), over 85% of the \d+\.\d GiB limit \(.+\)$/;
  await refusedUpFront(t, out, ['local', '--workers', '2', '--config', cfg], new RegExp(`^ttc local: model\\.seqLen=8192, train\\.batchSize=64: 2 local workers' training steps of [\\d,]+ parameters, batch 64×8192 and their coordinator ${over.source}`));
  const sweep = path.join(out, 'sweep.json');
  fs.writeFileSync(sweep, JSON.stringify({ base: { ...long, model: { seqLen: 8192, heads: 1 } }, sizes: [{ layers: 1, hidden: 64 }], budgets: [{ kind: 'flops', value: 1e11 }] }));
  await refusedUpFront(t, out, ['sweep', '--config', sweep], new RegExp(`^ttc sweep: sweep member L1-d64_F1\\.0e11: model\\.seqLen=8192, train\\.batchSize=64: 2 local workers' training steps .* ${over.source}`));
  // a coordinator holds the run's weights: more parameters than one typed array holds, on any machine
  fs.writeFileSync(cfg, JSON.stringify({ ...long, backend: 'auto', model: { layers: 64, hidden: 4096, heads: 16, ffn: 16384, seqLen: 32, vocab: 1000 }, train: { batchSize: 16 } }));
  await refusedUpFront(t, out, ['coordinator', '--config', cfg, '--port', '0'], /^ttc coordinator: model\.hidden=4096, model\.layers=64, model\.ffn=16384: the model would have 12,909,335,528 parameters, over the 4,294,967,296 one typed array \(its flat weights\) can hold$/);
});
