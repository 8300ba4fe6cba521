/**
 * `ttc sweep`'s console (cli/sweep-view.ts): a tiny real sweep, its output a pipe (not a TTY),
 * prints the progress view — a line per member and phase as it starts and ends, then the results —
 * not the log stream, and no Dawn warnings on a machine without a usable Vulkan driver (the
 * backend probes Dawn in a child process, ml/backend.ts); every log line is in the files:
 * console.log the whole stream, each member's train.log its steps one line each and its workers'
 * output. And the view itself, in place on a terminal, with a fake one.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { spawnTtc } from './kit/procs.ts';
import { tempDir, TEST_CACHE_DIR, TINY_MODEL } from './kit/helpers.ts';
import { mlmStepFlops } from '../ml/flops.ts';
import { numMaskedPerSeq } from '../ml/data/masking.ts';
import { SweepView, viewMode } from '../cli/sweep-view.ts';

/** What a log line looks like (core/run/log.ts): none of these belong on the quiet console. */
const LOG_LINE = /^\d{4}-\d\d-\d\dT\S+Z (info|warn|error) /;
/** Dawn's native diagnostics on a machine without a (usable) Vulkan driver. */
const DAWN = /Couldn't load Vulkan|vkCreateInstance|loader_get_json|artificially reduced|^Warning: /;

test('a sweep prints its progress view, not its logs, and no Dawn warnings; the logs are whole in console.log and each train.log', async (t) => {
  const dir = tempDir('console');
  const perStep = mlmStepFlops({ ...TINY_MODEL, hidden: 48, ffn: 96, heads: 2 }, 4, numMaskedPerSeq(TINY_MODEL.seqLen)).training * 2;
  const cfg = path.join(dir, 'sweep.json');
  fs.writeFileSync(cfg, JSON.stringify({
    sweepId: 'quiet', outputDir: dir, workers: 2,
    // auto: the workers probe webgpu — with no Vulkan driver to find (below), Dawn would complain on stderr
    base: { cacheDir: TEST_CACHE_DIR, backend: 'auto', model: { seqLen: TINY_MODEL.seqLen, vocab: TINY_MODEL.vocab }, train: { batchSize: 4, evalEvery: 4, checkpointEvery: 8 }, data: { maxValidationSequences: 16 } },
    sizes: [{ layers: 1, hidden: 32, heads: 2, ffn: 64 }, { layers: 1, hidden: 48, heads: 2, ffn: 96 }],
    budgets: [{ id: 'b0', kind: 'flops', value: perStep * 16.5 }],
    evaluation: { finetune: { steps: 4, batchSize: 16 }, maxTrain: 128, maxDev: 32, maxTest: 32, compression: { bits: [8], granularities: ['channel'], embeddings: [false], sparsities: [0.5], iterative: { rounds: 1, stepsPerRound: 2 }, combined: [] } },
  }));
  const noVulkan = path.join(dir, 'no-such-icd.json');
  const p = spawnTtc(['sweep', '--config', cfg], { VK_DRIVER_FILES: noVulkan, VK_ICD_FILENAMES: noVulkan });
  const code = await p.exited;
  const out = p.lines.join('\n');
  t.is(code, 0, out);
  const sweepDir = path.join(dir, 'quiet');
  const members = ['L1-d32_b0', 'L1-d48_b0'];

  // the view: a header, each member and phase starting and ending, the results
  t.regex(p.lines[0]!, new RegExp(`^sweep quiet: 2 members on 2 local workers, then compression \\+ evaluation; full logs in ${sweepDir}/console\\.log`));
  members.forEach((m, i) => {
    t.regex(out, new RegExp(`^pretrain ${m}: member ${i + 1}/2 \\(1 layers, d=\\d+; budget flops [^)]+\\): starting$`, 'm'));
    t.regex(out, new RegExp(`^pretrain ${m}: done — validation loss \\d+\\.\\d{4} after \\d+ steps \\(in \\S+\\)$`, 'm'));
    t.regex(out, new RegExp(`^finetune ${m}: done — dev accuracy \\S+%, train loss \\S+(; best at step \\d+/\\d+(, stopped early after \\d+)?)? \\(in \\S+\\)$`, 'm'));
    t.regex(out, new RegExp(`^prune ${m} sparsity 0\\.5: done — `, 'm'));
  });
  t.regex(out, /^evaluate cells: done — 8 cell\(s\) \(in \S+\)$/m);
  t.regex(out, new RegExp(`^report quiet: done — ${sweepDir}/report\\.html`, 'm'));
  t.regex(out, /best size/);
  t.regex(out, new RegExp(`^logs: ${sweepDir}/console\\.log`, 'm'));
  // …and nothing of the log stream: no log lines, no workers' output, no per-step lines, no Dawn
  t.deepEqual(p.lines.filter((l) => LOG_LINE.test(l) || /\[worker-\d\]|checkpoint: |^\S+ step \d+\/\d+/.test(l) || DAWN.test(l)), []);

  // the files have it all
  const full = fs.readFileSync(path.join(sweepDir, 'console.log'), 'utf8');
  t.is(full.split('\n').filter((l) => /\[worker-\d\] worker worker-\d: connected to coordinator/.test(l)).length, 2);
  t.regex(full, /info \[sweep\] member 2\/2 L1-d48_b0 .*: starting/);
  t.regex(full, /info \[evaluate\] job cell\//);
  t.regex(full, /\[worker-\d\] backend: webgpu: no GPU adapter found/, 'the workers probed webgpu (and found no adapter)');
  t.notRegex(full, DAWN, "Dawn's warnings stayed in the probe");
  let steps = 0;
  for (const m of members) {
    const log = fs.readFileSync(path.join(sweepDir, 'members', m, 'train.log'), 'utf8');
    const summary = JSON.parse(fs.readFileSync(path.join(sweepDir, 'members', m, 'summary.json'), 'utf8'));
    for (let s = 1; s <= summary.steps; s++) t.regex(log, new RegExp(`info \\[${m}\\] step ${s}/${summary.totalSteps} \\(`), `${m}: step ${s} in train.log`);
    t.regex(log, /info \[\S+\] checkpoint: /);
    t.regex(log, /\[worker-\d\] formation \d+: rank \d of 2, mlm task/, "the workers' output while it trained");
    steps += summary.steps;
  }
  t.true(p.lines.length < steps, `${p.lines.length} console lines for ${steps} training steps`);
});

/** A fake terminal: what was written, and the screen it leaves (ESC[nF ESC[0J erase the last n lines). */
function fakeTerminal() {
  const writes: string[] = [];
  const screen: string[] = [];
  const stream = {
    columns: 100,
    rows: 20,
    write(s: string) {
      writes.push(s);
      let rest = s;
      for (let m = /^\u001b\[(\d+)F\u001b\[0J/.exec(rest); m; m = /^\u001b\[(\d+)F\u001b\[0J/.exec(rest)) {
        screen.splice(screen.length - Number(m[1]));
        rest = rest.slice(m[0].length);
      }
      screen.push(...rest.split('\n').slice(0, -1));
      return true;
    },
  };
  return { stream, writes, screen };
}

test('on a terminal the running phases are rows redrawn in place under the finished ones; stop leaves only those', (t) => {
  const dir = tempDir('sweep-view');
  const term = fakeTerminal();
  const view = new SweepView({ file: path.join(dir, 'console.log'), mode: 'tty', members: 2, out: term.stream, err: term.stream });
  view.note('sweep s: 2 members');
  view.onPhase({ phase: 'pretrain', id: 'A', state: 'start', detail: 'member 1/2: starting' });
  view.memberProgress('A', path.join(dir, 'A.log')).update({ step: 5, totalSteps: 10, budgetFraction: 0.5, loss: 6.5, valLoss: 6.6, etaSeconds: 75 });
  (view as unknown as { paint(force: boolean): void }).paint(true);
  t.deepEqual(term.screen.slice(0, 1), ['sweep s: 2 members']);
  t.regex(term.screen[1]!, /^pretrain A {2}\[#{10}-{10}\] {2}5\/10 steps \(50%\) {2}loss 6\.500 {2}val 6\.600 {2}ETA 1m15s$/);
  t.regex(term.screen[2]!, /^sweep: \S+ elapsed · 0\/2 members pretrained · logs: /);
  t.is(term.screen.length, 3);
  view.console('warn', '2026-01-01T00:00:00.000Z warn [sweep] something that matters');
  view.console('info', '2026-01-01T00:00:00.000Z info [sweep] something for the log only');
  view.workerOutput('worker-0', '2026-01-01T00:00:00.000Z error [worker-0] worker worker-0: it broke', 'stderr');
  view.workerOutput('worker-0', "Warning: Couldn't load Vulkan: libvulkan.so.1: cannot open shared object file", 'stderr');
  view.workerOutput('worker-1', 'ttc worker: Error: something it could not survive', 'stderr');
  view.workerOutput('worker-1', '    at someFunction (file:///x.ts:1:1)', 'stderr');
  view.workerOutput('worker-1', '2026-01-01T00:00:00.000Z warn [worker-1] leaving ring formation 1: A: done', 'stderr');
  view.onPhase({ phase: 'pretrain', id: 'A', state: 'done', detail: 'validation loss 6.1 after 10 steps' });
  view.stop();
  t.deepEqual(term.screen.map((l) => l.replace(/\(in \S+\)$/, '(in T)')), [
    'sweep s: 2 members',
    '2026-01-01T00:00:00.000Z warn [sweep] something that matters',
    '2026-01-01T00:00:00.000Z error [worker-0] worker worker-0: it broke',
    'ttc worker: Error: something it could not survive',
    'pretrain A: done — validation loss 6.1 after 10 steps (in T)',
  ]);
  const file = fs.readFileSync(path.join(dir, 'console.log'), 'utf8');
  for (const l of ['something for the log only', "Couldn't load Vulkan", 'it broke', 'at someFunction', 'leaving ring formation']) t.true(file.includes(l), l);
  t.regex(fs.readFileSync(path.join(dir, 'A.log'), 'utf8'), /info \[A\] step 5\/10 \(50\.0% of budget\) loss 6\.500/);
  t.is(viewMode(true, { isTTY: true }), 'verbose');
  t.is(viewMode(false, { isTTY: true }, { TERM: 'xterm' }), 'tty');
  t.is(viewMode(false, { isTTY: true }, { TERM: 'dumb' }), 'plain');
  t.is(viewMode(false, { isTTY: false }, {}), 'plain');
});
