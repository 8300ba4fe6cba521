/**
 * The webgpu fused kernels (ml/kernels/webgpu: LayerNorm, bias+GELU, softmax cross-entropy, the
 * embedding gradient) on lavapipe, against the tfjs cpu backend's compositions: values and
 * gradients of every case of tests/kit/fused-child.ts (odd shapes), that the start-up self-test
 * activated them, that they ran fused (no fallback), that the tensor count stays flat across
 * repetitions, that out-of-range ids are skipped and duplicates summed, that a kernel whose WGSL
 * does not compile fails the self-test, and that the one-step training check still agrees with
 * them on. Each backend runs in its own process (Dawn is process-global); the two tests run one
 * after the other, so that at most two of these children (and one lavapipe) load the CPU at once.
 *
 * Tolerance per output tensor: max |webgpu − cpu| ≤ ATOL + RTOL·max |cpu| (float32, reductions in
 * another order, GPU exp/log/erfc): the self-test's own tolerance (SELF_TEST_TOLERANCE).
 *
 * Without lavapipe's ICD file the tests are registered as skipped, with the reason in the title.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';

import { SELF_TEST_TOLERANCE } from '../ml/kernels/fused-check.ts';
import type { FusedChildArgs, FusedChildResult } from './kit/fused-child.ts';
import { CHECK_DEFAULTS, CHECK_MODEL, compareOneStep, readOneStep, TOLERANCE, type OneStepArgs } from './kit/one-step.ts';
import { tempDir } from './kit/helpers.ts';
import { findLavapipe, NO_LAVAPIPE, onlyIcd, runTsx, stderrTail } from './kit/lavapipe.ts';

const LAVAPIPE = findLavapipe();

/** the ops this file checks (attention has its own file, tests/webgpu-attention.test.ts) */
const OPS = ['layerNorm', 'biasGelu', 'softmaxXent', 'embeddingGrad'];
/** every op the webgpu backend fuses */
const ALL_OPS = [...OPS, 'attention'];

const child = (script: string, args: string[], env: NodeJS.ProcessEnv) => runTsx(script, args, env, 120_000);

async function fusedChild(a: FusedChildArgs, env: NodeJS.ProcessEnv, file: string): Promise<FusedChildResult> {
  const r = await child('tests/kit/fused-child.ts', [JSON.stringify(a), file], env);
  if (r.code !== 0) throw new Error(`fused child (${a.backend}) exited ${r.code}:\n${stderrTail(r.stderr, 12)}`);
  return JSON.parse(fs.readFileSync(file, 'utf8')) as FusedChildResult;
}

/** Share of the tolerance the worst element of `got` uses against `ref` (> 1 fails). */
function used(got: number[], ref: number[]): number {
  let maxRef = 0;
  let maxDiff = 0;
  for (let i = 0; i < ref.length; i++) {
    maxRef = Math.max(maxRef, Math.abs(ref[i]));
    const d = Math.abs(got[i] - ref[i]);
    maxDiff = Number.isNaN(d) ? Infinity : Math.max(maxDiff, d);
  }
  return got.length !== ref.length ? Infinity : maxDiff / (SELF_TEST_TOLERANCE.atol + SELF_TEST_TOLERANCE.rtol * maxRef);
}

if (LAVAPIPE) {
  test.serial('webgpu fused kernels (lavapipe) vs tfjs cpu: values and gradients on odd shapes, self-test on, no fallback, no tensor leak, too-wide rows fall back, bad WGSL caught', async (t) => {
    const dir = tempDir('wgpu-fused');
    const [gpu, cpu] = await Promise.all([
      fusedChild({ backend: 'webgpu', allowSoftwareGpu: true, fusedKernels: true, reps: 2 }, onlyIcd(LAVAPIPE), path.join(dir, 'gpu.json')),
      fusedChild({ backend: 'cpu', fusedKernels: false, reps: 1 }, process.env, path.join(dir, 'cpu.json')),
    ]);
    t.is(gpu.backend, 'webgpu');
    t.deepEqual([...gpu.fused].sort(), [...ALL_OPS].sort(), gpu.log.join('\n'));
    for (const op of OPS) t.true(gpu.log.some((l) => l.startsWith(`webgpu: fused ${op} on (wgsl:`)), `no "fused ${op} on" line:\n${gpu.log.join('\n')}`);
    t.deepEqual(gpu.counts.fallback, {}, 'every call of the cases ran fused');
    for (const op of OPS) t.true((gpu.counts.fused[op] ?? 0) > 0, `${op} ran fused`);
    const worst: Record<string, number> = {};
    for (let i = 0; i < cpu.cases.length; i++) {
      const [g, c] = [gpu.cases[i], cpu.cases[i]];
      t.is(g.name, c.name);
      const shares = c.outputs.map((ref, j) => used(g.outputs[j], ref));
      worst[g.op] = Math.max(worst[g.op] ?? 0, ...shares);
      t.true(shares.every((s) => s <= 1), `${g.name}: outputs use ${shares.map((s) => `${(100 * s).toFixed(1)}%`).join(', ')} of max|Δ| ≤ ${SELF_TEST_TOLERANCE.atol} + ${SELF_TEST_TOLERANCE.rtol}·max|ref|`);
    }
    t.log(`worst share of the tolerance per op: ${Object.entries(worst).map(([op, s]) => `${op} ${(100 * s).toFixed(2)}%`).join(', ')}; webgpu child ${(gpu.ms / 1000).toFixed(1)} s`);
    t.true(gpu.numTensors.every((n) => n === gpu.numTensors[0]), `tf.memory().numTensors after each repetition: ${gpu.numTensors.join(', ')}`);
    t.is(gpu.embeddingExact?.maxAbsDiff, 0, 'integer rows: duplicates summed exactly, ids outside [0, rows) skipped');
    // exact GELU against a double-precision reference (tests/kit/erfc-ref.ts): error relative to
    // max(|ref|, 1) on [−10, 10], and relative error in the negative tail, where 1 + erf cancels
    const g = gpu.gelu!;
    t.log(`gelu vs double: fused value ${g.fused.value.toExponential(2)}, gradient ${g.fused.grad.toExponential(2)}, tail ${g.fused.tail.toExponential(2)}; composite (tfjs erf) ${g.composite.value.toExponential(2)}, ${g.composite.grad.toExponential(2)}, tail ${g.composite.tail.toExponential(2)}`);
    t.true(g.fused.value <= 5e-7 && g.fused.grad <= 5e-7 && g.fused.tail <= 1e-4, JSON.stringify(g.fused));
    t.deepEqual(gpu.wide, { fused: {}, fallback: { layerNorm: 2, biasGelu: 2 } }, 'rows wider than the kernels take run as the composite (forward and the grad pass each call once)');
    t.regex(gpu.brokenShader?.failed ?? '(passed)', /ttc_broken: .*undefined_name/);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test.serial('one MLM training step, webgpu with the fused kernels on vs cpu: agrees', async (t) => {
    const dir = tempDir('wgpu-fused');
    const step = async (a: Partial<OneStepArgs>, env: NodeJS.ProcessEnv, name: string) => {
      const file = path.join(dir, `${name}.bin`);
      const r = await child('bench/lib/one-step-child.ts', [JSON.stringify({ dims: CHECK_MODEL, ...CHECK_DEFAULTS, ...a }), file], env);
      if (r.code !== 0) throw new Error(`one-step ${name} exited ${r.code}: ${r.stdout.slice(-500)}\n${r.stderr.slice(-1500)}`);
      return readOneStep(file);
    };
    const [gpu, cpu] = await Promise.all([
      step({ backend: 'webgpu', allowSoftwareGpu: true, leakSteps: 1 }, onlyIcd(LAVAPIPE), 'webgpu'),
      step({ backend: 'cpu', fastKernels: false }, process.env, 'cpu'),
    ]);
    for (const op of OPS) t.true(gpu.log.some((l) => l.startsWith(`webgpu: fused ${op} on`)), `fused ${op} not on:\n${gpu.log.join('\n')}`);
    const cmp = compareOneStep(gpu, cpu);
    for (const l of cmp.lines) t.log(l);
    t.true(cmp.ok, `webgpu (fused) disagrees with cpu (tolerance ${JSON.stringify(TOLERANCE)}):\n${cmp.lines.join('\n')}`);
    t.true(gpu.numTensors.every((n) => n === gpu.numTensors[0]), `numTensors after each step: ${gpu.numTensors.join(', ')}`);
    fs.rmSync(dir, { recursive: true, force: true });
  });
} else {
  test.skip(`webgpu fused kernels vs tfjs cpu (${NO_LAVAPIPE})`, () => {});
  test.skip(`one MLM training step with the webgpu fused kernels on (${NO_LAVAPIPE})`, () => {});
}
