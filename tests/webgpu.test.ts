/**
 * The webgpu code path, on lavapipe (Mesa's CPU Vulkan driver; .ci/run installs Mesa 25 from
 * bookworm-backports): one real MLM training step (MlmTrainer: forward, loss, gradients, clip +
 * AdamW) from the same weights on the same batch on `webgpu` and on `cpu` must agree within the
 * float32 tolerance of tests/kit/one-step.ts (TOLERANCE, justified there and in docs/gpu.md), and
 * so must a matMul check. Each side runs in its own process (bench/lib/one-step-child.ts): a tfjs
 * process holds one backend, and Dawn is process-global. The webgpu side is pinned to lavapipe
 * with VK_DRIVER_FILES, so a machine with a real GPU tests the same thing.
 *
 * Without lavapipe's ICD file the agreement tests are registered as skipped, with the reason in
 * their title; with it, no adapter or any disagreement fails them.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';

import { CHECK_DEFAULTS, CHECK_MODEL, compareOneStep, readOneStep, runOneStep, TOLERANCE, type OneStepArgs, type OneStepResult } from './kit/one-step.ts';
import { tempDir } from './kit/helpers.ts';
import { findLavapipe, NO_LAVAPIPE, onlyIcd, resultLine, runTsx, whyChild } from './kit/lavapipe.ts';

const LAVAPIPE = findLavapipe();

const CHILD = 'bench/lib/one-step-child.ts';

interface ChildOutcome {
  msg: Record<string, unknown>;
  code: number | null;
  stderr: string;
  result?: OneStepResult;
}

async function runChild(args: Omit<OneStepArgs, 'dims' | 'batch' | 'seed' | 'lr'> & Partial<OneStepArgs>, env: NodeJS.ProcessEnv, dir: string, name: string): Promise<ChildOutcome> {
  const full: OneStepArgs = { dims: CHECK_MODEL, ...CHECK_DEFAULTS, ...args };
  const file = path.join(dir, `${name}.bin`);
  const r = await runTsx(CHILD, [JSON.stringify(full), file], env, 90_000);
  const msg = resultLine(r);
  return { msg, code: r.code, stderr: r.stderr, result: msg.ok && !full.probe ? readOneStep(file) : undefined };
}

const why = whyChild;

if (LAVAPIPE) {
  test('webgpu (lavapipe) vs cpu: one MLM training step and a matMul agree within the float32 tolerance; no tensor leak', async (t) => {
    const dir = tempDir('webgpu');
    const [gpu, cpu] = await Promise.all([
      runChild({ backend: 'webgpu', allowSoftwareGpu: true, leakSteps: 3 }, onlyIcd(LAVAPIPE), dir, 'webgpu'),
      runChild({ backend: 'cpu', fastKernels: false }, process.env, dir, 'cpu'),
    ]);
    if (!cpu.result) return t.fail(`the cpu reference step failed: ${why(cpu)}`);
    if (gpu.msg.unavailable) {
      return t.fail(
        `lavapipe is installed (${LAVAPIPE}) but the webgpu backend is unavailable: ${why(gpu)}. ` +
          'Mesa ≥ 25 is needed (Debian bookworm\'s 22.3 gives no adapter); .ci/run installs it from bookworm-backports.',
      );
    }
    if (!gpu.result) return t.fail(`the webgpu step failed: ${why(gpu)}`);
    const r = gpu.result;
    t.regex(r.detail, /^webgpu: /);
    t.log(`adapter: ${r.detail}; webgpu init ${r.ms.init.toFixed(0)} ms, first step ${r.ms.step.toFixed(0)} ms, 3 more ${r.ms.leakSteps.toFixed(0)} ms`);
    const cmp = compareOneStep(r, cpu.result);
    for (const l of cmp.lines) t.log(l);
    t.true(cmp.ok, `webgpu disagrees with cpu (tolerance ${JSON.stringify(TOLERANCE)}):\n${cmp.lines.join('\n')}`);
    t.true(Number.isFinite(r.loss) && r.loss > 0);
    t.true(
      r.numTensors.length === 4 && r.numTensors.every((n) => n === r.numTensors[0]),
      `tf.memory().numTensors after each webgpu step: ${r.numTensors.join(', ')} (must not grow)`,
    );
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('backend auto skips a software-only webgpu adapter (lavapipe) and ends on a CPU backend, saying why', async (t) => {
    const dir = tempDir('webgpu');
    const o = await runChild({ backend: 'auto', probe: true }, onlyIcd(LAVAPIPE), dir, 'auto');
    t.truthy(o.msg.ok, why(o));
    const log = (o.msg.log as string[]) ?? [];
    t.true(['wasm', 'cpu'].includes(String(o.msg.backend)), `ended on ${o.msg.backend}`);
    t.true(
      log.some((l) => /^webgpu: adapter ".*" is a software \(CPU\) implementation, skipped$/.test(l)),
      `the log must say the software adapter was skipped:\n${log.join('\n')}`,
    );
    fs.rmSync(dir, { recursive: true, force: true });
  });
} else {
  test.skip(`webgpu vs cpu: one MLM training step and a matMul agree (${NO_LAVAPIPE})`, () => {});
  test.skip(`backend auto skips a software-only webgpu adapter (${NO_LAVAPIPE})`, () => {});
}

test('without any Vulkan driver: auto ends on a CPU backend with "no GPU adapter found", webgpu forced is refused with it', async (t) => {
  const dir = tempDir('webgpu');
  const env = onlyIcd(path.join(dir, 'no-such-icd.json'));
  const [auto, forced] = await Promise.all([
    runChild({ backend: 'auto', probe: true }, env, dir, 'auto'),
    runChild({ backend: 'webgpu', probe: true }, env, dir, 'forced'),
  ]);
  t.truthy(auto.msg.ok, why(auto));
  t.true(['wasm', 'cpu'].includes(String(auto.msg.backend)), `ended on ${auto.msg.backend}`);
  const log = (auto.msg.log as string[]) ?? [];
  t.true(log.some((l) => /^webgpu: (no GPU adapter found|Dawn not usable)/.test(l)), log.join('\n'));
  t.is(forced.code, 3, why(forced));
  t.regex(String(forced.msg.unavailable), /webgpu: (no GPU adapter found|Dawn not usable)/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the agreement check catches a 1% error in one small-gradient tensor and a wrong loss', async (t) => {
  // in this process, cpu only: what the comparison flags is independent of where results come from
  const ref = await runOneStep({ backend: 'cpu', fastKernels: false, dims: CHECK_MODEL, ...CHECK_DEFAULTS });
  t.true(compareOneStep(ref, ref).ok);
  const spec = (await import('../ml/model/spec.ts')).paramLayout(CHECK_MODEL).specs.find((s) => s.name === 'encoder.layer.1.attention.self.query.weight')!;
  const grads = Float32Array.from(ref.grads);
  for (let i = spec.offset; i < spec.offset + spec.size; i++) grads[i] *= 1.01;
  const bad = compareOneStep({ ...ref, grads }, ref);
  t.false(bad.ok);
  t.regex(bad.lines[0], /^FAIL gradients per tensor: .*encoder\.layer\.1\.attention\.self\.query\.weight/);
  t.false(compareOneStep({ ...ref, loss: ref.loss * (1 + 1e-4) }, ref).ok);
  const weights = Float32Array.from(ref.weights);
  weights[7] += 2e-3; // one weight moved the other way by an AdamW step
  t.false(compareOneStep({ ...ref, weights }, ref).ok);
});
