/**
 * A full disk during a run, on a real full filesystem: the run's outputDir is a small tmpfs that
 * holds one checkpoint of the tiny model and the run's small files, but not a second checkpoint.
 * `ttc train` and `ttc local` end with one coded line naming the checkpoint and the space it needs
 * (no stack), no partial temporary is left, the earlier checkpoint is intact, the workers of
 * `ttc local` are told why and every process exits; once the filesystem has room, --resume finishes
 * the run. Mounting needs root (CAP_SYS_ADMIN): without it the tests are registered as skipped.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { descendants, spawnTtc, waitGone, type Proc } from './kit/procs.ts';
import { tempDir, TINY_MODEL, writeConfig } from './kit/helpers.ts';
import { checkpointsDir, loadCheckpoint } from '../ml/checkpoint/checkpoint.ts';
import { DiskFullError, writeJsonAtomic } from '../core/fs.ts';
import { MetricsWriter } from '../core/run/metrics.ts';
import { createLogger } from '../core/run/log.ts';
import { paramLayout } from '../ml/model/spec.ts';

const env = { TTC_SECRET: crypto.randomBytes(24).toString('base64'), TTC_SECRET_FILE: undefined };
const layout = paramLayout(TINY_MODEL);
// weights and the two AdamW moments in f32: a checkpoint's size, give or take its headers
const CHECKPOINT_BYTES = layout.total * 12;

const mount = (dir: string, bytes: number, remount = false) =>
  execFileSync('mount', remount ? ['-o', `remount,size=${bytes}`, dir] : ['-t', 'tmpfs', '-o', `size=${bytes}`, 'tmpfs', dir], { stdio: 'pipe' });
// lazy: a process still holding a file there cannot make the teardown fail
const unmount = (dir: string) => execFileSync('umount', ['-l', dir], { stdio: 'pipe' });

/** `p` matched literally in a RegExp. */
const esc = (p: string) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Why this machine cannot mount a tmpfs (undefined when it can). */
const cannotMount = ((): string | undefined => {
  const dir = tempDir('mount-probe');
  try {
    mount(dir, 1 << 20);
    unmount(dir);
    return undefined;
  } catch (e) {
    return ((e as { stderr?: Buffer }).stderr?.toString().trim() || (e as Error).message).split('\n')[0];
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
})();

const diskTest = (title: string, fn: (t: ExecutionContext) => Promise<void>) =>
  cannotMount ? test.skip(`${title} (needs to mount a tmpfs: ${cannotMount})`, fn) : test(title, fn);

/** A fresh tmpfs of `bytes` (unmounted after the test). */
function tmpfs(t: ExecutionContext, bytes: number): string {
  const dir = tempDir('diskfull');
  mount(dir, bytes);
  t.teardown(() => {
    unmount(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** A run config whose outputDir is a fresh tmpfs with room for one checkpoint and not two (unmounted after the test). */
function fullDiskRun(t: ExecutionContext): { config: string; runDir: string; outputDir: string } {
  const outputDir = tmpfs(t, Math.round(CHECKPOINT_BYTES * 1.5));
  const config = writeConfig(tempDir('diskfull-cfg'), { runId: 'full', outputDir, train: { batchSize: 4, evalEvery: 4, checkpointEvery: 4 }, budget: { kind: 'steps', steps: 12 } });
  return { config, runDir: path.join(outputDir, 'full'), outputDir };
}

/** The run failed at its second checkpoint as it should: one error line and no stack, nothing partial left, the first checkpoint intact. */
function checkFailure(t: ExecutionContext, p: Proc, command: string, runDir: string): void {
  const out = p.lines.join('\n');
  const errors = p.lines.filter((l) => l.startsWith(`ttc ${command}:`));
  t.is(errors.length, 1, out.slice(-3000));
  const root = checkpointsDir(runDir);
  t.regex(errors[0]!, new RegExp(`^ttc ${command}: disk full: cannot write ${esc(root)}/step-00000008 \\(\\d+\\.\\d KiB needed, \\d+(\\.\\d)? KiB free on its filesystem\\); the run's earlier checkpoints are intact: free some space, then resume it \\(--resume\\)$`));
  const needed = Number(errors[0]!.match(/\(([\d.]+) KiB needed/)![1]) * 1024;
  t.true(needed >= CHECKPOINT_BYTES && needed < CHECKPOINT_BYTES * 1.1, `needed ${needed} for a checkpoint of about ${CHECKPOINT_BYTES} bytes`);
  t.false(p.lines.some((l) => /^\s+at /.test(l)), 'no stack trace');
  t.deepEqual(fs.readdirSync(root), ['step-00000004'], 'no partial temporary left, the earlier checkpoint kept');
  t.is(loadCheckpoint(path.join(root, 'step-00000004'), layout).state.step, 4, 'the earlier checkpoint verifies');
}

diskTest('a disk that fills during ttc train: one line naming the checkpoint and the space it needs, no partial left; --resume finishes once there is room', async (t) => {
  const { config, runDir, outputDir } = fullDiskRun(t);
  const first = spawnTtc(['train', '--config', config], env);
  t.is(await first.exited, 1, first.lines.slice(-20).join('\n'));
  checkFailure(t, first, 'train', runDir);
  mount(outputDir, 16 << 20, true);
  const resumed = spawnTtc(['train', '--resume', runDir], env);
  t.is(await resumed.exited, 0, resumed.lines.slice(-20).join('\n'));
  t.regex(resumed.lines.join('\n'), /resuming run full from its checkpoint at step 4\/12/);
  t.regex(resumed.lines.join('\n'), /completed its budget: 12\/12 steps/);
});

diskTest('a disk that fills under the coordinator of ttc local: one line, the workers are told why and every process exits; --resume finishes once there is room', async (t) => {
  const { config, runDir, outputDir } = fullDiskRun(t);
  const local = spawnTtc(['local', '--workers', '2', '--config', config], env);
  await local.waitFor(/ring of 2 up/);
  const tree = descendants(local.child.pid!);
  t.is(await local.exited, 1, local.lines.slice(-20).join('\n'));
  checkFailure(t, local, 'local', runDir);
  // Each worker logs the coordinator's reason as it stops.
  const told = local.lines.filter((l) => /coordinator: stop \(run failed: disk full: cannot write \S+step-00000008 /.test(l));
  t.is(told.length, 2, local.lines.slice(-20).join('\n'));
  t.deepEqual(await waitGone(tree, 20_000), [], 'every worker exited');
  mount(outputDir, 16 << 20, true);
  const resumed = spawnTtc(['local', '--workers', '2', '--resume', runDir], env);
  t.is(await resumed.exited, 0, resumed.lines.slice(-20).join('\n'));
  t.regex(resumed.lines.join('\n'), /resuming run full from its checkpoint at step 4\/12/);
  t.regex(resumed.lines.join('\n'), /completed its budget: 12\/12 steps/);
});

diskTest('on a full disk the run files fail with a DiskFullError naming the file (no temporary left), and the log only warns', async (t) => {
  const dir = tmpfs(t, 1 << 20);
  execFileSync('fallocate', ['-l', String(1 << 20), path.join(dir, 'filler')]);
  const summary = path.join(dir, 'summary.json');
  const e = t.throws(() => writeJsonAtomic(summary, { steps: 1, note: 'x'.repeat(5000) }), { instanceOf: DiskFullError });
  t.is(e?.code, 'TTC_ERR_DISK_FULL');
  t.regex(e!.message, new RegExp(`^disk full: cannot write ${esc(summary)} \\(4\\.9 KiB needed, 0 B free on its filesystem\\)$`));
  const metrics = new MetricsWriter(path.join(dir, 'metrics.jsonl'));
  t.throws(() => metrics.append({ step: 1, tokens: 1, flops: 1, seconds: 1, wallSeconds: 1, lr: 0 }), { instanceOf: DiskFullError, message: /cannot write \S+metrics\.jsonl \(\d+ B needed/ });
  t.notThrows(() => createLogger('', path.join(dir, 'train.log'), true).info('a line'));
  t.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('.tmp-')), [], 'no temporary left');
});
