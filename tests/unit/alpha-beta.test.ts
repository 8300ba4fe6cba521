import test from 'ava';
import { fitAlphaBeta, ring2dSeconds, ringBoundSeconds, ringSeconds, scalingEfficiency, stepSeconds, type Sample, type StepModel } from '../../bench/lib/alpha-beta.ts';

const MiB = 1 << 20;
const grid = (m: { alpha: number; beta: number; gamma: number }, noise: (i: number) => number = () => 1): Sample[] => {
  const out: Sample[] = [];
  for (const N of [2, 3, 4, 8]) for (const mib of [1, 16, 64]) out.push({ N, bytes: mib * MiB, seconds: ringSeconds(m, N, mib * MiB) * noise(out.length) });
  return out;
};

test('the fit recovers α and β from exact ring times', (t) => {
  const truth = { alpha: 0.4e-3, beta: 1 / 110e6, gamma: 0 };
  const fit = fitAlphaBeta(grid(truth));
  t.true(Math.abs(fit.alpha - truth.alpha) / truth.alpha < 1e-6);
  t.true(Math.abs(fit.beta - truth.beta) / truth.beta < 1e-6);
  t.true(fit.rmsRel < 1e-9);
});

test('with γ the fit recovers all three; with ±3% noise it stays within 10%', (t) => {
  const truth = { alpha: 1e-3, beta: 1 / 100e6, gamma: 2e-9 };
  const exact = fitAlphaBeta(grid(truth), { gamma: true });
  t.true(Math.abs(exact.gamma - truth.gamma) / truth.gamma < 1e-6);
  const noisy = fitAlphaBeta(grid(truth, (i) => 1 + 0.03 * Math.sin(7 * i)), { gamma: true });
  t.true(Math.abs(noisy.beta - truth.beta) / truth.beta < 0.1);
  t.true(noisy.rmsRel < 0.05);
});

test('a coefficient the data push below zero is dropped, not returned negative', (t) => {
  // times that fall with N at fixed size would need α < 0
  const samples: Sample[] = [2, 4, 8].flatMap((N) => [1, 64].map((m) => ({ N, bytes: m * MiB, seconds: (m * MiB) / 1e8 / (N / 2) })));
  const fit = fitAlphaBeta(samples, { gamma: true });
  t.true(fit.alpha >= 0 && fit.beta >= 0 && fit.gamma >= 0);
});

test('the bound, the 2-D ring and the step schedule', (t) => {
  t.is(ringBoundSeconds(2, 125e6, 125e6), 1);
  t.is(ringBoundSeconds(1, 1e9, 1), 0);
  const m = { alpha: 1e-3, beta: 1e-9, gamma: 0 };
  t.true(ring2dSeconds(m, 1024, 1e8) < ringSeconds(m, 1024, 1e8)); // 2·62 latency steps vs 2·1023
  t.is(ring2dSeconds(m, 7, 1e8), ringSeconds(m, 7, 1e8)); // a prime N has no 2-D shape
  const sm: StepModel = { net: m, computeSeconds: 0.3, forwardShare: 1 / 3, params: 1e6, bytesPerParam: 4, updateSecondsPerParam: 0, buckets: 4 };
  const comm = ringSeconds(m, 8, 4e6);
  t.true(Math.abs(stepSeconds(sm, 'allreduce', 8) - (0.3 + comm)) < 1e-12);
  t.true(Math.abs(stepSeconds(sm, 'sharded', 8) - (0.3 + comm)) < 1e-12); // rs + ag = one all-reduce
  // bandwidth-bound: reduce-scatters hidden under the backward win; latency-bound: 4 buckets pay 4 × 2(N−1)α per phase and lose
  const bw: StepModel = { ...sm, net: { alpha: 1e-5, beta: 1e-9, gamma: 0 } };
  t.true(stepSeconds(bw, 'sharded-overlap', 8) < stepSeconds(bw, 'sharded', 8));
  t.true(stepSeconds(sm, 'sharded-overlap', 8) > stepSeconds(sm, 'sharded', 8));
  t.is(scalingEfficiency(sm, 'allreduce', 1), 1);
  // the sharded update is 1/N of the full one
  const upd = { ...sm, updateSecondsPerParam: 1e-7 };
  t.true(stepSeconds(upd, 'sharded', 8) < stepSeconds(upd, 'allreduce', 8));
});
