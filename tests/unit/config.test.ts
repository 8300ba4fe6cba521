import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { resolveConfig, loadConfig, ConfigError } from '../../core/config/load.ts';
import { renderConfigDocs } from '../../core/config/docs.ts';
import { loadSweepConfig, resolveSweepConfig } from '../../coordinator/sweep-config.ts';
import { overridesFromSets } from '../../cli/args.ts';
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

test('--set refuses __proto__ / constructor / prototype keys before assigning anything: Object.prototype stays clean', (t) => {
  for (const set of ['__proto__.polluted=1', 'constructor.prototype.polluted=1', 'model.__proto__.polluted=1', 'model.prototype=1']) {
    const err = t.throws(() => overridesFromSets([set]), { instanceOf: ConfigError }, set);
    t.regex(err!.message, /^--set .*: key "[^"]*(__proto__|constructor|prototype)" is not allowed/, set);
    t.false(err!.message.includes('\n'), 'one line');
  }
  t.is(({} as Record<string, unknown>).polluted, undefined);
  t.deepEqual(overridesFromSets(['model.layers=3']), { model: { layers: 3 } });
});

test('a config file, a config object or a sweep holding __proto__ / constructor / prototype keys is refused naming the key path', (t) => {
  const dir = tempDir('cfg-proto');
  const proto = path.join(dir, 'proto.json');
  fs.writeFileSync(proto, '{ "__proto__": { "polluted": 1 }, "model": { "layers": 2 } }');
  t.throws(() => loadConfig(proto), { instanceOf: ConfigError, message: `config file ${proto}: key "__proto__" is not allowed (__proto__, constructor and prototype are never config fields)` });
  const ctor = path.join(dir, 'ctor.json');
  fs.writeFileSync(ctor, '{ "model": { "layers": 2, "constructor": { "prototype": { "polluted": 1 } } } }');
  t.throws(() => loadConfig(ctor), { instanceOf: ConfigError, message: /^config file .*ctor\.json: key "model\.constructor" is not allowed/ });
  // objects that did not come from a file (a submission, a sweep's base) take the same check
  t.throws(() => resolveConfig(JSON.parse('{ "optimizer": { "prototype": 1 } }')), { instanceOf: ConfigError, message: /^config: key "optimizer\.prototype" is not allowed/ });
  const sweep = path.join(dir, 'sweep.json');
  fs.writeFileSync(sweep, JSON.stringify({ base: {}, sizes: [JSON.parse('{ "layers": 1, "hidden": 64, "__proto__": { "x": 1 } }')], budgets: [{ kind: 'flops', value: 1e11 }] }));
  t.throws(() => loadSweepConfig(sweep), { instanceOf: ConfigError, message: /key "sizes\[0\]\.__proto__" is not allowed/ });
  t.is(({} as Record<string, unknown>).polluted, undefined);
});

test('runId and sweepId must be run ids (they name a directory under outputDir): paths are refused by name', (t) => {
  for (const id of ['../escape', '/abs', 'a/b', '..', '.hidden', 'a\\b', 'x'.repeat(129)]) {
    refuses(t, { runId: id }, 'runId', JSON.stringify(id), 'expected a run id');
    t.throws(() => resolveSweepConfig({ sweepId: id, sizes: [{ layers: 1, hidden: 64 }], budgets: [{ kind: 'flops', value: 1e11 }] }), { instanceOf: ConfigError, message: /sweepId: expected a run id/ }, id);
  }
  for (const id of ['', 'run-1', 'L2-d128_F1e11_s2', 'a.b', '_x']) t.is(resolveConfig({ runId: id }).runId, id);
});

test('sizes have upper bounds: the issue\'s values are refused naming the field, the value and the bound', (t) => {
  refuses(t, { model: { layers: 1e9 } }, 'model.layers', '1000000000', '<= 1,024');
  refuses(t, { model: { hidden: 1e6 } }, 'model.hidden', '1000000', '<= 65,536');
  refuses(t, { model: { seqLen: 1e7 } }, 'model.seqLen', '10000000', '8..65,536');
  refuses(t, { model: { vocab: 1e9 } }, 'model.vocab', '1000000000', '64..1,048,576');
  refuses(t, { budget: { steps: 1e20 } }, 'budget.steps', '100000000000000000000', '0..4,294,967,295');
  refuses(t, { train: { batchSize: 1e9 } }, 'train.batchSize', '1000000000', '<= 65,536');
  refuses(t, { optimizer: { lr: 1e308 } }, 'optimizer.lr', '1e+308', '(0, 10]');
  refuses(t, { optimizer: { lr: 0 } }, 'optimizer.lr', '(0, 10]');
  refuses(t, { seed: 2 ** 60 }, 'seed', 'safe integer');
  refuses(t, { budget: { kind: 'flops', flops: 1e300 } }, 'budget.flops', '[0, 1e30]');
  // within every bound, but a tensor of the step would not fit one typed array: named with the fields that make it
  refuses(t, { model: { seqLen: 32768 } }, 'train.batchSize=16, model.heads=2, model.seqLen=32768', 'attention scores', '34,359,738,368 elements');
  refuses(t, { model: { vocab: 1048576, hidden: 8192 } }, 'model.vocab=1048576, model.hidden=8192', 'word embeddings');
  refuses(t, { model: { hidden: 65536, ffn: 262144, heads: 1 } }, 'model.hidden=65536, model.ffn=262144', 'feed-forward weight');
  t.regex(t.throws(() => resolveConfig({ model: { layers: 0 } }))!.message, /^invalid config: model\.layers: expected a positive integer <= 1,024, got 0$/, 'one problem, one line');
  t.notThrows(() => resolveConfig({ model: { layers: 1024, hidden: 65536, heads: 1, ffn: 65536, seqLen: 65536, vocab: 65536 }, train: { batchSize: 1 } }), 'the largest sizes, one sequence: refused only by memory, where it is checked');
});
