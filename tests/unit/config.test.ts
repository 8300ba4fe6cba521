import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { resolveConfig, loadConfig, ConfigError } from '../../core/config/load.ts';
import { renderConfigDocs } from '../../core/config/docs.ts';
import { loadSweepConfig } from '../../coordinator/sweep-config.ts';
import { tempDir } from '../kit/helpers.ts';

const refuses = (t: import('ava').ExecutionContext, layer: unknown, ...fragments: string[]) => {
  const err = t.throws(() => resolveConfig(layer), { instanceOf: ConfigError });
  for (const f of fragments) t.true(err!.message.includes(f), `"${err!.message}" should mention ${f}`);
};

test('defaults resolve to a valid config', (t) => {
  const c = resolveConfig({});
  t.is(c.model.hidden % c.model.heads, 0);
  t.is(c.budget.kind, 'steps');
});

test('a bad value is refused with the field name, the value and what was expected', (t) => {
  refuses(t, { model: { layers: -1 } }, 'model.layers', '-1', 'positive integer');
  refuses(t, { model: { layers: 2.5 } }, 'model.layers', '2.5');
  refuses(t, { backend: 'gpu' }, 'backend', '"gpu"', 'auto');
  refuses(t, { budget: { kind: 'joules' } }, 'budget.kind', 'joules');
  refuses(t, { optimizer: { warmupFraction: 1.5 } }, 'optimizer.warmupFraction', '1.5', '[0, 1)');
  refuses(t, { train: { batchSize: 0 } }, 'train.batchSize', '0');
});

test('unknown fields and inconsistent combinations are refused by name', (t) => {
  refuses(t, { model: { layrs: 2 } }, 'model.layrs');
  refuses(t, { model: { hidden: 100, heads: 3 } }, 'model.hidden', '100', 'model.heads');
  refuses(t, { budget: { kind: 'flops', flops: 0 } }, 'budget.flops');
  refuses(t, { data: { extraTextFiles: ['/nonexistent/file.txt'] } }, 'data.extraTextFiles', '/nonexistent/file.txt');
});

test('a missing file or invalid JSON gives a clear error', (t) => {
  const dir = tempDir('cfg');
  t.throws(() => loadConfig(path.join(dir, 'nope.json')), { instanceOf: ConfigError, message: /cannot read config file/ });
  fs.writeFileSync(path.join(dir, 'bad.json'), '{ "model": ');
  t.throws(() => loadConfig(path.join(dir, 'bad.json')), { instanceOf: ConfigError, message: /not valid JSON/ });
});

test('every shipped config in configs/ is valid', (t) => {
  const files = fs.readdirSync('configs').filter((f) => f.endsWith('.json'));
  t.true(files.includes('local.json'));
  // Sweep configs (a base run config + sizes + budgets) are checked by their own schema.
  for (const f of files) t.notThrows(() => (f.startsWith('sweep') ? loadSweepConfig(path.join('configs', f)) : loadConfig(path.join('configs', f))), f);
});

test('docs/config.md is generated from the schema and up to date', (t) => {
  t.is(fs.readFileSync('docs/config.md', 'utf8'), renderConfigDocs(), 'run `npm run docs:config`');
});
