/**
 * A start killed between creating a run directory and its config.json landing (found by the sweep
 * test: its SIGKILL fell there) leaves the directory with only the config's temporary; the next
 * start removes it instead of refusing "already exists". Anything else is refused, not deleted.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { createRunDir, removeUnstartedRunDir } from '../../core/run/rundir.ts';
import { tempDir, tinyConfig } from '../kit/helpers.ts';

test('a run directory holding only its killed config write is removed, and the run then starts', (t) => {
  const out = tempDir('rundir');
  const config = tinyConfig({ outputDir: out, runId: 'member-a' });
  const dir = path.join(out, 'member-a');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'config.json.tmp-4242-0a1b2c3d'), '{"outputDir": "/tm');
  t.throws(() => createRunDir(config), { message: /already exists/ });
  removeUnstartedRunDir(dir);
  t.false(fs.existsSync(dir));
  t.is(createRunDir(config).dir, dir);
});

test('a started run, an absent directory and a foreign directory are left alone', (t) => {
  const out = tempDir('rundir');
  const run = createRunDir(tinyConfig({ outputDir: out, runId: 'started' }));
  removeUnstartedRunDir(run.dir);
  t.true(fs.existsSync(run.configFile));
  t.notThrows(() => removeUnstartedRunDir(path.join(out, 'absent')));
  const foreign = path.join(out, 'foreign');
  fs.mkdirSync(foreign);
  fs.writeFileSync(path.join(foreign, 'notes.txt'), 'mine');
  t.throws(() => removeUnstartedRunDir(foreign), { message: /has no config\.json but holds notes\.txt/ });
  t.true(fs.existsSync(path.join(foreign, 'notes.txt')));
});
