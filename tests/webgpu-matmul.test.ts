/**
 * The tiled webgpu matmul and mixed precision on lavapipe (Mesa's CPU Vulkan driver, whose adapter
 * offers shader-f16), each in a child process (Dawn is process-global):
 * - the fp32 and f16 tiled programs against tfjs's `cpu` backend on odd shapes (transposes, batch,
 *   bias), within the error bounds of tests/kit/matmul-check.ts; an f16 overflow gives +inf; the
 *   registered kernels route per call (an activation falls back to tfjs's kernel);
 * - one mixed-precision MLM training step against the fp32 cpu step (MIXED_TOLERANCE below);
 * - without a Vulkan driver, mixed is refused when webgpu is forced and trains in fp32 under auto.
 * Without lavapipe's ICD file the lavapipe tests are registered as skipped, the reason in the title.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';

import { CHECK_DEFAULTS, CHECK_MODEL, compareOneStep, readOneStep, type OneStepArgs, type OneStepResult } from './kit/one-step.ts';
import type { MatmulCheckResult } from './kit/matmul-check.ts';
import { tempDir } from './kit/helpers.ts';
import { findLavapipe, NO_LAVAPIPE, onlyIcd, resultLine, runTsx, whyChild } from './kit/lavapipe.ts';

const LAVAPIPE = findLavapipe();

const ONE_STEP = 'bench/lib/one-step-child.ts';
const MATMUL = 'tests/kit/matmul-child.ts';

/**
 * Mixed precision vs the fp32 cpu step. The matmul operands are rounded to f16 (relative 2⁻¹¹ ≈
 * 4.9e-4 each), the rest runs in fp32. Measured on lavapipe (CHECK_MODEL, seed 1234): loss rel
 * 3.2e-6; gradients per tensor ‖Δ‖/‖ref‖ ≤ 7.7e-4; matMul check max |Δ| 1.5e-2 (K = 160, values
 * to ~50). Limits: loss 1e-4 relative (30×); gradients per tensor 1e-2 (13×), element-wise 1e-3 of
 * the largest + 1e-2 relative; weights 2e-3 = 2·lr: AdamW's first step moves a weight by ~lr·sign(g),
 * so a gradient near 0 whose sign f16 flips moves it the other way — that is the worst case, not a
 * bug; matMul: 2·2⁻¹¹·K·E|a||b| ≈ 0.1 absolute (the f16 bound of tests/kit/matmul-check.ts).
 */
const MIXED_TOLERANCE = { lossRtol: 1e-4, rtol: 1e-2, atol: 2e-3, gradAtolOfMax: 1e-3, tensorRtol: 1e-2, tensorFloorOfTotal: 1e-7 } as const;
const MIXED_MATMUL_ATOL = 0.1;

interface Outcome {
  msg: Record<string, unknown>;
  code: number | null;
  stderr: string;
}

async function child(script: string, args: string[], env: NodeJS.ProcessEnv): Promise<Outcome> {
  const r = await runTsx(script, args, env, 120_000);
  return { msg: resultLine(r), code: r.code, stderr: r.stderr };
}

const why = whyChild;

async function oneStep(args: Partial<OneStepArgs> & { backend: OneStepArgs['backend'] }, env: NodeJS.ProcessEnv, file: string): Promise<{ o: Outcome; result?: OneStepResult }> {
  const full: OneStepArgs = { dims: CHECK_MODEL, ...CHECK_DEFAULTS, ...args };
  const o = await child(ONE_STEP, [JSON.stringify(full), file], env);
  return { o, result: o.msg.ok && !full.probe ? readOneStep(file) : undefined };
}

if (LAVAPIPE) {
  test('tiled matmul (fp32 and f16) vs tfjs cpu on odd shapes within the error bounds; f16 overflow gives +inf; per-call routing; no tensor leak', async (t) => {
    const o = await child(MATMUL, [], onlyIcd(LAVAPIPE));
    if (!o.msg.ok) return t.fail(`the matmul check failed: ${why(o)}`);
    const r = o.msg as unknown as MatmulCheckResult;
    t.is(r.precision, 'mixed', `lavapipe offers shader-f16, so mixed must be active: ${r.detail}`);
    for (const c of r.cases) {
      t.log(`${c.name}: fp32 ${(100 * c.fp32Used).toFixed(1)}% of its bound (max |Δ| ${c.fp32MaxAbs.toExponential(1)}), f16 ${(100 * c.f16Used).toFixed(1)}% (max |Δ| ${c.f16MaxAbs.toExponential(1)})`);
      t.true(c.fp32Used <= 1, `${c.name}: fp32 tiled outside its bound (${c.fp32Used})`);
      t.true(c.f16Used <= 1, `${c.name}: f16 tiled outside its bound (${c.f16Used})`);
    }
    t.deepEqual(r.overflow, { f16AllInfInTile: true, f16FiniteElsewhere: true, fp32Finite: true });
    t.deepEqual(r.routes, { plainTiled: true, reluFellBack: true, sharedTiled: true });
    t.true(r.numTensors.every((n) => n === r.numTensors[0]), `tf.memory().numTensors: ${r.numTensors.join(', ')}`);
  });

  test('a mixed-precision MLM training step on lavapipe agrees with the fp32 cpu step within MIXED_TOLERANCE; no tensor leak', async (t) => {
    const dir = tempDir('mixed');
    const [mixed, cpu] = await Promise.all([
      oneStep({ backend: 'webgpu', allowSoftwareGpu: true, precision: 'mixed', leakSteps: 2 }, onlyIcd(LAVAPIPE), path.join(dir, 'mixed.bin')),
      oneStep({ backend: 'cpu', fastKernels: false }, process.env, path.join(dir, 'cpu.bin')),
    ]);
    if (!cpu.result) return t.fail(`the cpu reference step failed: ${why(cpu.o)}`);
    if (!mixed.result) return t.fail(`the mixed step failed: ${why(mixed.o)}`);
    const r = mixed.result;
    t.is(r.precision, 'mixed', r.detail);
    t.regex(r.detail, /mixed precision$/);
    const cmp = compareOneStep(r, cpu.result, MIXED_TOLERANCE);
    for (const l of cmp.lines) t.log(l);
    // the matMul check runs through the f16 program too: its own bound (compareOneStep's uses atol for it)
    const mm = compareOneStep(r, cpu.result, { ...MIXED_TOLERANCE, atol: MIXED_MATMUL_ATOL });
    t.true(cmp.loss.rel <= MIXED_TOLERANCE.lossRtol && cmp.grads.bad === 0 && cmp.tensors.every((x) => x.ok) && cmp.weights.bad === 0, cmp.lines.join('\n'));
    t.is(mm.matmul.bad, 0, mm.lines.join('\n'));
    t.true(r.numTensors.every((n) => n === r.numTensors[0]), `tf.memory().numTensors after each step: ${r.numTensors.join(', ')}`);
    fs.rmSync(dir, { recursive: true, force: true });
  });
} else {
  test.skip(`tiled matmul vs tfjs cpu on odd shapes (${NO_LAVAPIPE})`, () => {});
  test.skip(`a mixed-precision training step on lavapipe agrees with the fp32 cpu step (${NO_LAVAPIPE})`, () => {});
}

test('without a Vulkan driver: mixed with webgpu forced is refused; with auto it trains in fp32 on a CPU backend and says why', async (t) => {
  const dir = tempDir('mixed');
  const env = onlyIcd(path.join(dir, 'no-such-icd.json'));
  const [forced, auto] = await Promise.all([
    oneStep({ backend: 'webgpu', probe: true, precision: 'mixed' }, env, path.join(dir, 'forced.bin')),
    oneStep({ backend: 'auto', probe: true, precision: 'mixed' }, env, path.join(dir, 'auto.bin')),
  ]);
  t.is(forced.o.code, 3, why(forced.o));
  t.regex(String(forced.o.msg.unavailable), /webgpu: (no GPU adapter found|Dawn not usable)/);
  t.truthy(auto.o.msg.ok, why(auto.o));
  t.true(['wasm', 'cpu'].includes(String(auto.o.msg.backend)));
  const log = (auto.o.msg.log as string[]) ?? [];
  t.true(log.some((l) => /^(wasm|cpu): mixed precision needs webgpu with shader-f16: training in fp32$/.test(l)), log.join('\n'));
  fs.rmSync(dir, { recursive: true, force: true });
});
