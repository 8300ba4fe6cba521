/**
 * ttc's side of bench/large-cpu.ts, in its own process (backends and kernel registrations are
 * process-global): the run's backend as `ttc train` starts it (memory check included), the run's
 * data, an MlmTrainer, then JSON lines on stdout answering stdin commands:
 *   (start)  → {"ready", backend, detail, log, params, warmupMs, rssMB}
 *   "step"   → {"ms", "gradMs", "applyMs", "loss"}: computeGradients (forward, backward, read-back)
 *              + apply (clip + AdamW), what Trainer.step runs in `ttc train`
 *   "eval"   → {"ms", "loss", "sequences"}: Trainer.evaluate on the run's validation batches
 *   "done"   → {"numTensors", "peakRssMB"}, exit
 *
 *   node --import tsx bench/lib/large-child.ts '<config JSON>'
 */
import { createInterface } from 'node:readline';

import { resolveConfig } from '../../core/config/load.ts';
import { initRunBackend } from '../../ml/loop/run-backend.ts';
import { loadTrainingData } from '../../ml/train/data.ts';
import { modelDims } from '../../ml/train/controller.ts';
import { paramLayout } from '../../ml/model/spec.ts';
import { initialWeights } from '../../ml/model/weights.ts';
import { MlmTrainer } from '../../ml/train/trainer.ts';
import { tf } from '../../ml/tf.ts';
import type { Logger } from '../../core/run/log.ts';
import { emit, runChildMain } from './child-main.ts';

const rssMB = () => Math.round(process.memoryUsage().rss / 2 ** 20);
let peakRss = 0;
const sample = () => (peakRss = Math.max(peakRss, rssMB()));

async function main(): Promise<void> {
  const config = resolveConfig(JSON.parse(process.argv[2] ?? '{}'), {});
  const backend = await initRunBackend(config);
  const quiet = (m: string) => process.stderr.write(`${m}\n`);
  const log = { info: quiet, warn: quiet, error: quiet } as unknown as Logger;
  const data = await loadTrainingData(config, log);
  const dims = modelDims(config);
  const layout = paramLayout(dims);
  const trainer = new MlmTrainer({ dims, optimizer: config.optimizer, gradClipNorm: config.optimizer.gradClipNorm }, initialWeights(layout, config.seed, config.model.initStd));
  let pos = { epoch: 0, offset: 0 };
  const timer = setInterval(sample, 200);
  const step = async () => {
    const b = data.reader.read(pos, 0, config.train.batchSize);
    pos = data.reader.advance(pos, config.train.batchSize);
    const t0 = performance.now();
    const loss = await trainer.computeGradients(b);
    const t1 = performance.now();
    await trainer.apply(config.optimizer.lr);
    const t2 = performance.now();
    sample();
    return { ms: t2 - t0, gradMs: t1 - t0, applyMs: t2 - t1, loss };
  };
  const warm = await step();
  emit({ ready: true, backend: backend.name, detail: backend.detail, log: backend.log, params: layout.total, warmupMs: warm.ms, rssMB: rssMB() });
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    const cmd = line.trim();
    if (cmd === 'step') emit(await step());
    else if (cmd === 'eval') {
      const t0 = performance.now();
      const loss = await trainer.evaluate(data.valBatches);
      emit({ ms: performance.now() - t0, loss, sequences: data.valBatches.reduce((a, b) => a + b.batch, 0) });
    } else if (cmd === 'done') break;
  }
  clearInterval(timer);
  emit({ numTensors: tf.memory().numTensors, peakRssMB: Math.max(peakRss, rssMB()) });
  rl.close();
  trainer.dispose();
}

runChildMain(main);
