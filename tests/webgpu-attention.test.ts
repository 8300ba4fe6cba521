/**
 * The fused webgpu attention (ml/kernels/webgpu/attention.ts) on lavapipe against the composite of
 * tfjs's cpu kernels: forward values and dq, dk, dv on odd shapes (T not a tile multiple, one head,
 * dh 4 to 64; 128 with TTC_ATTENTION_WIDE=1) with and without padding masks, including a wholly padded sequence (uniform, as the
 * composite's −1e9 bias makes it). Each backend runs in its own process (tests/kit/attention-child.ts;
 * Dawn is process-global), the webgpu one pinned to lavapipe with VK_DRIVER_FILES.
 *
 * Tolerance per output tensor: max |webgpu − cpu| ≤ 1e-5 + 2e-4 · max |cpu| (SELF_TEST_TOLERANCE:
 * float32 with reductions in another order; inputs ~N(0, 4) make scores of a few units).
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';

import { SELF_TEST_TOLERANCE } from '../ml/kernels/fused-check.ts';
import { ATTENTION_CASES, caseName, type AttentionChildResult } from './kit/attention-child.ts';
import { tempDir } from './kit/helpers.ts';
import { findLavapipe, NO_LAVAPIPE, onlyIcd, runTsx, stderrTail } from './kit/lavapipe.ts';

const LAVAPIPE = findLavapipe();

async function runChild(backend: 'webgpu' | 'cpu', dir: string): Promise<{ result?: AttentionChildResult; why: string }> {
  const file = path.join(dir, `${backend}.json`);
  const env = LAVAPIPE && backend === 'webgpu' ? onlyIcd(LAVAPIPE) : process.env;
  const r = await runTsx('tests/kit/attention-child.ts', [backend, file], env, 110_000);
  if (r.code === 0 && fs.existsSync(file)) return { result: JSON.parse(fs.readFileSync(file, 'utf8')) as AttentionChildResult, why: '' };
  return { why: `${backend} child exited ${r.code}: ${r.stdout.slice(-2000)}\n${stderrTail(r.stderr, 10)}` };
}

/** Largest share of the tolerance any element of any output uses (≤ 1 passes); NaN counts as ∞. */
function share(got: number[], ref: number[]): number {
  let maxRef = 0;
  let maxDiff = 0;
  for (let i = 0; i < ref.length; i++) {
    maxRef = Math.max(maxRef, Math.abs(ref[i]));
    const d = Math.abs(got[i] - ref[i]);
    maxDiff = Number.isNaN(d) || got.length !== ref.length ? Infinity : Math.max(maxDiff, d);
  }
  return maxDiff / (SELF_TEST_TOLERANCE.atol + SELF_TEST_TOLERANCE.rtol * maxRef);
}

if (LAVAPIPE) {
  test('webgpu fused attention (lavapipe) agrees with the cpu composite forward and backward on odd shapes and masks; self-test activates it; 1 + 3 dispatches; no tensor leak', async (t) => {
    const dir = tempDir('webgpu-attention');
    const [gpu, cpu] = await Promise.all([runChild('webgpu', dir), runChild('cpu', dir)]);
    if (!cpu.result) return t.fail(cpu.why);
    if (!gpu.result) return t.fail(gpu.why);
    const g = gpu.result;
    t.log(`adapter: ${g.backend}`);
    t.true(g.fusedOps.includes('attention'), `the start-up self-test did not activate fused attention:\n${g.log.join('\n')}`);
    t.log(g.log.find((l) => /fused attention/.test(l)) ?? '');
    t.false(cpu.result.fusedOps.includes('attention'));
    const outNames = ['ctx', 'dq', 'dk', 'dv'];
    for (const [i, c] of ATTENTION_CASES.entries()) {
      const name = caseName(c);
      const [got, ref] = [g.cases[i], cpu.result.cases[i]];
      t.is(got.name, name);
      t.true(got.fused, `${name}: ran as the composite on webgpu (declined or inactive)`);
      const shares = ref.outputs.map((r, o) => share(got.outputs[o], r));
      t.log(`${name}: share of tolerance used ${shares.map((s, o) => `${outNames[o]} ${(s * 100).toFixed(2)}%`).join(', ')}`);
      shares.forEach((s, o) => t.true(s <= 1, `${name}: ${outNames[o]} uses ${s.toFixed(2)}× the tolerance`));
    }
    t.deepEqual(g.dispatches, { forward: 1, backward: 3 }, `dispatches of one TtcAttention / TtcAttentionGrad call: ${JSON.stringify(g.dispatches)}`);
    t.true(g.numTensors.every((n) => n === g.numTensors[0]), `tf.memory().numTensors after each step: ${g.numTensors.join(', ')} (must not grow)`);
    fs.rmSync(dir, { recursive: true, force: true });
  });
} else {
  test.skip(`webgpu fused attention agrees with the cpu composite (${NO_LAVAPIPE})`, () => {});
}

test('webgpu attention declines what it cannot do (dh not a multiple of 4, dh > 128), which then runs as the composite', async (t) => {
  const { webgpuAttention } = await import('../ml/kernels/webgpu/attention.ts');
  const s = webgpuAttention().supports!;
  const call = (rows: number, width: number, batch: number, heads: number) => ({ shapes: [[rows, width]], attrs: { batch, heads, scale: 1, masked: false } });
  t.true(s(call(26, 24, 2, 3)));
  t.true(s(call(256, 768, 2, 12)));
  t.true(s(call(128, 256, 1, 2)));
  t.false(s(call(26, 18, 2, 3)), 'dh 6');
  t.false(s(call(128, 512, 1, 2)), 'dh 256');
  t.false(s(call(27, 24, 2, 3)), 'rows not a multiple of batch');
});
