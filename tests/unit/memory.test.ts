/**
 * The memory estimate of a training step (ml/model/memory.ts) and the backend choice it drives
 * (ml/backend.ts with ml/loop/memory-check.ts): monotone in every size, within a stated factor of
 * what tfjs really allocates for a model outside the fitted set (the tensor peak on cpu, the wasm
 * heap after a step), and `auto`/requested backends chosen or refused by it.
 */
import test from 'ava';
import '@tensorflow/tfjs-backend-wasm';

import { resolveConfig } from '../../core/config/load.ts';
import { initBackend, MemoryError } from '../../ml/backend.ts';
import { numMaskedPerSeq } from '../../ml/data/masking.ts';
import { memoryFit } from '../../ml/loop/memory-check.ts';
import { estimateMemory, fits, parseMemoryMax, peakTensorFloats, WASM_HEAP_LIMIT, type HostMemory } from '../../ml/model/memory.ts';
import { paramLayout, type ModelDims } from '../../ml/model/spec.ts';
import { initialWeights } from '../../ml/model/weights.ts';
import { MlmTrainer } from '../../ml/train/trainer.ts';
import { tf } from '../../ml/tf.ts';

/** not one of the shapes the coefficients were fitted on */
const SMALL: ModelDims = { layers: 3, hidden: 96, heads: 3, ffn: 384, seqLen: 48, vocab: 700 };
const B = 6;
const BERT_BASE: ModelDims = { layers: 12, hidden: 768, heads: 12, ffn: 3072, seqLen: 64, vocab: 4000 };
/** the measured/estimated ratio allowed: the estimate may be up to 35% high, at most 10% low */
const LOW = 0.9;
const HIGH = 1.35;

function batchOf(d: ModelDims, batch: number) {
  const T = d.seqLen;
  const k = numMaskedPerSeq(T);
  const ids = new Int32Array(batch * T).map((_, i) => 5 + ((i * 7) % (d.vocab - 5)));
  const pos = new Int32Array(batch * k);
  const lab = new Int32Array(batch * k);
  for (let b = 0; b < batch; b++) for (let j = 0; j < k; j++) [pos[b * k + j], lab[b * k + j]] = [b * T + 1 + j, 7 + j];
  return { batch, seqLen: T, inputIds: ids, maskedPositions: pos, maskedLabels: lab };
}

function trainer(d: ModelDims) {
  return new MlmTrainer({ dims: d, optimizer: { beta1: 0.9, beta2: 0.98, epsilon: 1e-6, weightDecay: 0.01 }, gradClipNorm: 1 }, initialWeights(paramLayout(d), 1, 0.02));
}

const config = (model: ModelDims, backend = 'auto', batchSize = 16) =>
  resolveConfig({ backend, model, train: { batchSize }, budget: { kind: 'steps', steps: 1 } }, {});

test('the estimate grows with every size', (t) => {
  const base = peakTensorFloats(SMALL, B, 4);
  for (const k of ['layers', 'hidden', 'ffn', 'seqLen', 'vocab', 'heads'] as const) {
    const bigger = { ...SMALL, [k]: SMALL[k] * 2 };
    t.true(peakTensorFloats(bigger, B, 4) > base, k);
  }
  t.true(peakTensorFloats(SMALL, 2 * B, 4) > base, 'batch');
  t.true(peakTensorFloats(SMALL, B, 8) > base, 'masked positions');
  const cpu = estimateMemory(SMALL, B, 4, 'cpu');
  const wasm = estimateMemory(SMALL, B, 4, 'wasm');
  t.is(cpu.trainerBytes, 16 * paramLayout(SMALL).total);
  t.is(wasm.backendBytes, wasm.tensorBytes);
  t.is(cpu.backendBytes, 0);
  t.true(cpu.hostBytes > wasm.hostBytes - wasm.tensorBytes + cpu.tensorBytes - 1, 'cpu keeps its tensors (and weight copies) in host memory');
});

test('BERT-base at batch 16×64 does not fit the wasm heap; a small model does', (t) => {
  const host: HostMemory = { bytes: 64 * 2 ** 30, source: 'test' };
  const big = fits(estimateMemory(BERT_BASE, 16, numMaskedPerSeq(64), 'wasm'), host);
  t.false(big.ok);
  t.regex(big.why, /wasm heap/);
  t.true(fits(estimateMemory(BERT_BASE, 16, numMaskedPerSeq(64), 'cpu'), host).ok);
  t.true(fits(estimateMemory(SMALL, B, numMaskedPerSeq(48), 'wasm'), host).ok);
  const tiny: HostMemory = { bytes: 2 * 2 ** 30, source: 'cgroup memory.max' };
  const refused = fits(estimateMemory(BERT_BASE, 16, numMaskedPerSeq(64), 'cpu'), tiny);
  t.false(refused.ok);
  t.regex(refused.why, /needs ~\d+\.\d GiB of host memory, over 85% of the 2\.0 GiB limit \(cgroup memory\.max\)/);
});

test('cgroup memory.max is parsed ("max" = no limit)', (t) => {
  t.is(parseMemoryMax('max\n'), undefined);
  t.is(parseMemoryMax('8589934592\n'), 8589934592);
  t.is(parseMemoryMax('garbage'), undefined);
});

async function measuredPeak(): Promise<number> {
  const tr = trainer(SMALL);
  const b = batchOf(SMALL, B);
  await tr.computeGradients(b); // warm-up
  const prof = await tf.profile(async () => {
    await tr.computeGradients(b);
    return [];
  });
  tr.dispose();
  return prof.peakBytes;
}

test.serial('the estimate is within its factor of the tensor peak tfjs measures for a step on cpu, and above it with fused kernels', async (t) => {
  const est = estimateMemory(SMALL, B, numMaskedPerSeq(SMALL.seqLen), 'cpu').tensorBytes;
  // the fit describes the composite ops (the worst case: fused kernels only keep fewer tensors)
  await initBackend('cpu', { threads: 1, fusedKernels: false });
  const composite = await measuredPeak();
  const ratio = est / composite;
  t.log(`estimated ${est} bytes, measured peak ${composite} with tfjs compositions (ratio ${ratio.toFixed(2)})`);
  t.true(ratio >= LOW && ratio <= HIGH, `ratio ${ratio}`);
  await initBackend('cpu', { threads: 1 });
  const fused = await measuredPeak();
  t.log(`measured peak with the fused kernels active here: ${fused} bytes`);
  t.true(fused <= est * 1.05, `fused ${fused} > estimate ${est}`);
});

test.serial('on wasm the heap after a step is within a factor of the estimate', async (t) => {
  // the estimate is fitted to the tfjs compositions (the fused kernels need less: it is an upper bound for them)
  await initBackend('wasm', { threads: 1, fastKernels: false, fusedKernels: false });
  const heap = () => (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length;
  const before = heap();
  const tr = trainer(SMALL);
  await tr.computeGradients(batchOf(SMALL, B));
  tr.dispose();
  const grown = heap() - before;
  const est = estimateMemory(SMALL, B, numMaskedPerSeq(SMALL.seqLen), 'wasm').backendBytes;
  t.log(`wasm heap grew by ${grown} bytes (${heap()} in all), estimate ${est}`);
  // the heap grows in steps of up to 20% and never shrinks: it can only be above the peak
  t.true(grown <= est * 1.25 && grown >= est * 0.5, `grown ${grown}, estimate ${est}`);
  t.true(heap() <= WASM_HEAP_LIMIT);
});

test.serial('auto takes wasm when the step fits its heap and cpu when it does not; a requested backend that cannot hold the model is refused', async (t) => {
  const host: HostMemory = { bytes: 64 * 2 ** 30, source: 'test' };
  const small = await initBackend('auto', { threads: 1, memory: memoryFit(config(SMALL), host) });
  if (small.name !== 'wasm' && small.name !== 'cpu') return t.pass(`a GPU backend was found (${small.name}): the CPU choice is not reached`);
  t.is(small.name, 'wasm');
  t.true(small.log.some((l) => /^wasm: chosen by memory/.test(l)), small.log.join('\n'));
  const big = await initBackend('auto', { threads: 1, memory: memoryFit(config(BERT_BASE), host) });
  t.is(big.name, 'cpu');
  t.true(big.log.some((l) => /^wasm: skipped, the step \(88,\d{3},\d{3} parameters, batch 16×64\) needs ~\d+\.\d GiB of tensors in the wasm heap/.test(l)), big.log.join('\n'));
  const e = await t.throwsAsync(initBackend('wasm', { threads: 1, memory: memoryFit(config(BERT_BASE, 'wasm'), host) }));
  t.true(e instanceof MemoryError);
  t.regex(e!.message, /^backend "wasm" cannot hold this model \(a training step of 88,\d{3},\d{3} parameters, batch 16×64\): needs ~\d+\.\d GiB of tensors in the wasm heap, over 75% of its 4\.0 GiB limit/);
  t.false(e!.message.includes('\n'));
  const tiny: HostMemory = { bytes: 2 ** 30, source: 'cgroup memory.max' };
  await t.throwsAsync(initBackend('auto', { threads: 1, memory: memoryFit(config(BERT_BASE), tiny) }), { instanceOf: MemoryError, message: /^no backend can hold this model/ });
  await t.throwsAsync(initBackend('cpu', { threads: 1, memory: memoryFit(config(BERT_BASE, 'cpu'), tiny) }), { instanceOf: MemoryError, message: /^backend "cpu" cannot hold this model .*1\.0 GiB limit \(cgroup memory\.max\)$/ });
});
