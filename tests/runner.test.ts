/**
 * tests/run.mjs against tiny files that pass, hang past ava's timeout, call process.exit() and
 * throw from a timer (tests/runner-fixtures/, outside the suite's glob): the closing line counts
 * every test, the unfinished ones as failed, and a broken file does not stop the others.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { scaled } from './kit/time-scale.mjs';

const DIR = 'tests/runner-fixtures';

test('the runner counts tests of files that hang, exit or crash as failed and still runs the rest', async (t) => {
  const files = ['hang', 'exit', 'crash', 'pass'].map((f) => `${DIR}/${f}.fixture.ts`);
  const args = ['tests/run.mjs', '--config', `${DIR}/ava.config.mjs`, '--timeout', `${scaled(5000)}ms`, ...files];
  const r = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    execFile(process.execPath, args, { timeout: scaled(120_000), maxBuffer: 16 << 20 }, (err, out, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, out, err: stderr });
    });
  });
  t.is(r.out.trimEnd().split('\n').at(-1), '5 passed, 6 failed, 1 skipped', `${r.out}${r.err}`);
  t.not(r.code, 0);
  for (const f of ['hang', 'exit', 'crash']) t.regex(r.out, new RegExp(`not ok - ${DIR}/${f}\\.fixture\\.ts › never starts`));
});
