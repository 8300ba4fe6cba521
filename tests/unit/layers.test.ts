/**
 * The layering holds on the real import graph (tests/kit/imports.ts): no module imports a layer
 * above its own or a sibling, outsiders use collective/ only through its public interface, the
 * lower layers load no TensorFlow.js, and the rule checker itself catches an injected upward import.
 */
import test from 'ava';
import { importGraph, importsOf, layerOf, layerViolations, sourceFiles } from '../kit/imports.ts';

const ROOT = process.cwd();
const PRODUCT = ['core', 'wire', 'collective', 'ml', 'compression', 'report', 'protocol', 'worker', 'coordinator', 'cli'];

test('every product module belongs to a layer, and no import breaks the layering', (t) => {
  const files = sourceFiles(ROOT, PRODUCT);
  t.true(files.length > 50, `${files.length} files read`);
  t.deepEqual(files.filter((f) => !layerOf(f)), [], 'files outside every layer');
  t.deepEqual(layerViolations(importGraph(ROOT, PRODUCT)), []);
});

test('tests and benchmarks use the collective library through collective/index.ts only', (t) => {
  const edges = importGraph(ROOT, ['tests', 'bench']);
  t.deepEqual(edges.filter((e) => e.to.startsWith('collective/') && e.to !== 'collective/index.ts').map((e) => `${e.from} → ${e.to}`), []);
  t.true(edges.some((e) => e.to === 'collective/index.ts'), 'the ring tests do use it');
});

test('core, wire, collective, protocol and report import no TensorFlow.js; only ml/ imports it directly', (t) => {
  const edges = importGraph(ROOT, PRODUCT).filter((e) => e.external && e.to.startsWith('@tensorflow/'));
  t.deepEqual(edges.filter((e) => !e.from.startsWith('ml/')).map((e) => `${e.from} → ${e.to}`), []);
});

test('the checker fails an injected upward import, a sibling import and a reach into collective internals', (t) => {
  const inject = (from: string, code: string) => importsOf(ROOT, from, code);
  t.deepEqual(layerViolations(inject('core/rng.ts', "import { tf } from '../ml/tf.ts';\n")), ['core/rng.ts (core/rng.ts) imports ml/tf.ts (ml/tf.ts), a layer above it']);
  t.regex(layerViolations(inject('ml/data/batches.ts', "import type { MlmTrainer } from '../train/trainer.ts';\n"))[0] ?? '', /ml\/data\/batches\.ts \(ml\/data\) imports ml\/train\/trainer\.ts \(ml\/train\), a layer above it/);
  t.regex(layerViolations(inject('worker/worker.ts', "import { x } from '../coordinator/driver.ts';\n"))[0] ?? '', /a sibling layer/);
  t.regex(layerViolations(inject('coordinator/driver.ts', "const m = await import('../cli/main.ts');\n"))[0] ?? '', /a layer above it/);
  t.regex(layerViolations(inject('worker/worker.ts', "import { Ring } from '../collective/ring.ts';\n"))[0] ?? '', /use its public interface collective\/index\.ts/);
  t.deepEqual(layerViolations(inject('cli/main.ts', "import { Ring } from '../collective/index.ts';\nimport fs from 'node:fs';\n")), []);
});
