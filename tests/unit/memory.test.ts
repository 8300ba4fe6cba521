/**
 * The memory estimate of a training step (ml/model/memory.ts) and the backend choice it drives
 * (ml/backend.ts with ml/loop/memory-check.ts): monotone in every size, within a stated factor of
 * what tfjs really allocates for a model outside the fitted set (the tensor peak on cpu, the wasm
 * heap after a step), and `auto`/requested backends chosen or refused by it.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import '@tensorflow/tfjs-backend-wasm';

import { ConfigError, loadConfig, resolveConfig } from '../../core/config/load.ts';
import { checkSweepFits, loadSweepConfig } from '../../coordinator/sweep-config.ts';
import { importGraph, runtimeClosure } from '../kit/imports.ts';
import { initBackend, MemoryError } from '../../ml/backend.ts';
import { numMaskedPerSeq } from '../../ml/data/masking.ts';
import { checkRunFits, memoryFit } from '../../ml/loop/memory-check.ts';
import { bytesText, estimateMemory, fits, parseMemoryMax, peakTensorFloats, WASM_HEAP_LIMIT, type HostMemory } from '../../ml/model/memory.ts';
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
  await t.throwsAsync(initBackend('cpu', { threads: 1, memory: memoryFit(config(BERT_BASE, 'cpu'), tiny) }), { instanceOf: MemoryError, message: /^backend "cpu" cannot hold this model .*1\.0 GiB limit \(cgroup memory\.max\); what makes it big: (model\.\w+=\d+, )*model\.hidden=768/ });
});

test('checkRunFits: every shipped config (and every member of a shipped sweep) fits a 24 GiB machine in every place it can run', (t) => {
  const host: HostMemory = { bytes: 24 * 2 ** 30, source: 'test' };
  const places = [{ workers: 1, coordinator: false }, { workers: 2, coordinator: true }, { workers: 0, coordinator: true }];
  for (const f of fs.readdirSync('configs').filter((x) => x.endsWith('.json'))) {
    const file = path.join('configs', f);
    if (f.startsWith('sweep')) {
      const s = loadSweepConfig(file);
      // a cluster sweep (sweep-gpu-cluster.json: 8 workers, one GPU each) runs its workers on separate machines: each holds one (the places below)
      if (!f.includes('cluster')) t.notThrows(() => checkSweepFits(s, { workers: s.workers, coordinator: true }, host), f);
      for (const place of places) t.notThrows(() => checkSweepFits(s, place, host), `${f} ${JSON.stringify(place)}`);
    } else for (const place of places) t.notThrows(() => checkRunFits(loadConfig(file), place, host), `${f} ${JSON.stringify(place)}`);
  }
});

test('checkRunFits: a run that does not fit is refused with the fields that make it big, the estimate and the limit, for what this machine holds of it', (t) => {
  const tiny: HostMemory = { bytes: 2 ** 30, source: 'cgroup memory.max' };
  const bert = config(BERT_BASE);
  const train = t.throws(() => checkRunFits(bert, { workers: 1, coordinator: false }, tiny), { instanceOf: MemoryError });
  t.regex(train!.message, /^model\.hidden=768, model\.layers=12(, model\.ffn=3072)?: a training step of 88,\d{3},\d{3} parameters, batch 16×64 needs ~\d+\.\d GiB of host memory \(parameters \+ optimizer state ~\d+\.\d GiB, the step's tensors not counted \(a GPU backend holds them\)\), over 85% of the 1\.0 GiB limit \(cgroup memory\.max\)$/);
  t.regex(t.throws(() => checkRunFits(bert, { workers: 0, coordinator: true }, tiny))!.message, /^model\.hidden=768.*: the coordinator of a run of 88,\d{3},\d{3} parameters needs ~\d+\.\d GiB of host memory \(the coordinator's restart point \(weights \+ AdamW moments\) ~\d+\.\d GiB\), over 85%/);
  // on cpu the step's tensors count: seqLen is what makes them big, however small the model
  const host: HostMemory = { bytes: 24 * 2 ** 30, source: 'test' };
  const long = config({ ...SMALL, seqLen: 8192 }, 'cpu');
  t.regex(t.throws(() => checkRunFits(long, { workers: 1, coordinator: false }, host))!.message, /^model\.seqLen=8192: a training step of [\d,]+ parameters, batch 16×8192 needs ~\d+\.\d GiB of host memory \(parameters \+ optimizer state ~\d+ MiB, the step's tensors ~\d+\.\d GiB\)/);
  t.notThrows(() => checkRunFits(long, { workers: 1, coordinator: false }, { bytes: 2 ** 50, source: 'test' }), 'fits a machine big enough');
  t.notThrows(() => checkRunFits(config({ ...SMALL, seqLen: 8192 }), { workers: 1, coordinator: false }, host), 'auto: a GPU may hold the tensors; the backend checks when it starts');
  // wasm: its 32-bit heap, whatever the machine
  t.regex(t.throws(() => checkRunFits(config(BERT_BASE, 'wasm'), { workers: 1, coordinator: false }, { bytes: 2 ** 50, source: 'test' }))!.message, /^model\.\w+=\d+.*: a training step of .* on backend "wasm" needs ~\d+\.\d GiB of tensors in the wasm heap, over 75% of its 4\.0 GiB limit/);
  // more parameters than one typed array holds: a config error on any machine
  const huge = config({ layers: 64, hidden: 4096, heads: 16, ffn: 16384, seqLen: 32, vocab: 1000 });
  t.throws(() => checkRunFits(huge, { workers: 0, coordinator: true }, { bytes: 2 ** 60, source: 'test' }), { instanceOf: ConfigError, message: /^model\.hidden=4096, model\.layers=64, model\.ffn=16384: the model would have 12,909,335,528 parameters, over the 4,294,967,296/ });
  t.is(bytesText(3.2e15), '2.8 PiB');
  t.is(bytesText(512 * 2 ** 20), '512 MiB');
});

test('checkRunFits loads no TensorFlow.js (a coordinator or a run server calls it before any backend)', (t) => {
  const edges = importGraph(process.cwd(), ['core', 'ml', 'coordinator']);
  const closure = runtimeClosure(edges, 'ml/loop/memory-check.ts');
  t.deepEqual(edges.filter((e) => closure.has(e.from) && e.external && e.to.startsWith('@tensorflow/')).map((e) => `${e.from} → ${e.to}`), []);
});
