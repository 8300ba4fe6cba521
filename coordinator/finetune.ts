/**
 * Data-parallel fine-tuning of one pretrained model on the classification task, driven from the
 * evaluation step: the connected workers form a ring (task "classify"), start from the same
 * classifier weights (pretrained encoder + a seeded head), and each step every rank trains on its
 * slice of the global batch and all-reduces the gradients. The global batch, its order, the
 * schedule and the head's initialisation are exactly those of the single-process `finetune`
 * (compression/eval/finetune.ts), so the result matches it up to float rounding. A worker lost midway
 * restarts the fine-tuning on the remaining workers (fine-tunes are short: no checkpoints).
 */
import * as M from '../protocol/messages.ts';
import { deriveSeed } from '../compression/eval/finetune.ts';
import { classifierWeightsFrom } from '../ml/train/classifier.ts';
import { learningRate, warmupSteps } from '../ml/train/schedule.ts';
import { paramLayout } from '../ml/model/spec.ts';
import { NUM_CLASSES } from '../ml/data/classification.ts';
import type { Config } from '../core/config/schema.ts';
import type { Logger } from '../core/run/log.ts';
import type { EvalSelection } from '../worker/jobs.ts';
import { WorkerFailure, type WorkerEntry, type WorkerMsg, type WorkerRegistry } from './registry.ts';
import { fetchState, formRing, loadState, type Collect } from './ring-formation.ts';

export interface DistributedFinetune {
  config: Config;
  /** start from a pretrained MLM model (encoder copied, head drawn from the seed) … */
  pretrained?: Float32Array;
  /** … or from classifier weights (rounds of iterative pruning) */
  initial?: Float32Array;
  /** pruning mask (classifier layout, 1 = keep) held through the fine-tuning */
  mask?: Uint8Array;
  classificationSeed: number;
  selection: EvalSelection;
  opts: { steps: number; batchSize: number; lr: number; warmupFraction: number; seed: number };
  /** distinguishes this fine-tuning's rings in logs */
  label: string;
  timeoutMs: number;
  waitForWorkersSeconds: number;
}

let formations = 1_000_000; // fine-tuning rings are numbered apart from pretraining's

export async function finetuneDistributed(reg: WorkerRegistry, job: DistributedFinetune, log: Logger): Promise<{ weights: Float32Array; trainLoss: number; devAccuracy: number; workers: number }> {
  const { config, opts } = job;
  const mlmLayout = paramLayout(config.model);
  const clsLayout = paramLayout(config.model, { kind: 'classifier', numClasses: NUM_CLASSES });
  const initial = job.initial ?? classifierWeightsFrom(mlmLayout, job.pretrained!, clsLayout, deriveSeed(opts.seed, 1), config.model.initStd);
  if (job.mask) for (let i = 0; i < initial.length; i++) if (job.mask[i] === 0) initial[i] = 0;
  const errors: string[] = [];
  for (let attempt = 1; attempt <= 3; attempt++) {
    const all = await reg.waitFor(1, job.waitForWorkersSeconds);
    // Every rank takes an equal slice of the global batch: use the most workers that divide it.
    let n = all.length;
    while (opts.batchSize % n !== 0) n -= 1;
    const members = all.slice(0, n);
    const formation = ++formations;
    const collect: Collect = (m, what, pick, t) =>
      reg.collect(m, what, pick, t, (w: WorkerEntry, msg: WorkerMsg) => {
        if (msg.t !== 'coord.step-failed' || msg.formation !== formation) return undefined;
        const blamed = msg.failedRank !== undefined ? m.find((x) => x.rank === msg.failedRank) : undefined;
        return new WorkerFailure(`${reg.who(w)} reports during ${what}: ${msg.reason}`, blamed ? [blamed] : []);
      });
    try {
      const spec = { classificationSeed: job.classificationSeed, eval: job.selection, batchSize: opts.batchSize, orderSeed: deriveSeed(opts.seed, 2) };
      const ready = await formRing(reg, collect, members, { formation, ringId: `${job.label}/f${formation}`, config: JSON.stringify(config), task: { kind: 'classify', spec: JSON.stringify(spec) }, setupTimeoutMs: Math.max(job.timeoutMs, 180_000), timeoutMs: job.timeoutMs }, log);
      const count = [...ready.values()][0].trainSequences;
      if (opts.batchSize > count) throw new Error(`fine-tuning batch ${opts.batchSize} exceeds the ${count} training examples`);
      loadState(reg, members, formation, { weights: initial, m: new Float32Array(initial.length), v: new Float32Array(initial.length), adamT: 0, mask: job.mask });
      const warm = warmupSteps(opts.steps, opts.warmupFraction);
      const tail = Math.max(1, Math.round(opts.steps / 10));
      let tailLoss = 0;
      let epoch = 0;
      let pos = 0;
      for (let step = 0; step < opts.steps; step++) {
        if (pos + opts.batchSize > count) {
          epoch += 1;
          pos = 0;
        }
        const lr = learningRate(step, opts.steps, warm, opts.lr);
        reg.broadcast(members, M.Step, () => ({ formation, step, lr, epoch, offset: pos }));
        const done = await collect(members, `fine-tuning step ${step + 1}`, (msg) => (msg.t === 'coord.step-done' && msg.formation === formation && msg.step === step ? msg.loss : undefined), job.timeoutMs);
        const loss = [...done.values()].reduce((a, b) => a + b, 0) / members.length;
        if (!Number.isFinite(loss)) throw new Error(`fine-tuning diverged: loss ${loss} at step ${step}`);
        if (step >= opts.steps - tail) tailLoss += loss;
        pos += opts.batchSize;
      }
      reg.broadcast(members, M.HashRequest, () => ({ formation, step: opts.steps }));
      const hashes = await collect(members, 'parameter hash', (msg) => (msg.t === 'coord.param-hash' && msg.formation === formation ? msg.hash : undefined), job.timeoutMs);
      if (new Set(hashes.values()).size > 1) throw new Error(`fine-tuning ${job.label}: parameters diverged across workers`);
      members[0].conn.send(M.EvalRequest, { formation, step: opts.steps });
      const evals = await collect([members[0]], 'dev evaluation', (msg) => (msg.t === 'coord.eval-done' && msg.formation === formation ? msg.accuracy : undefined), job.timeoutMs);
      const state = await fetchState(collect, members[0], formation, opts.steps, clsLayout.total, job.timeoutMs);
      if ('badPart' in state) throw new WorkerFailure(`${reg.who(members[0])} sent a state part outside the model: ${state.badPart}`, [members[0]]);
      reg.broadcast(members, M.Reset, () => ({ formation, reason: 'fine-tuning done' }));
      return { weights: state.weights, trainLoss: tailLoss / tail, devAccuracy: evals.get(members[0])!, workers: members.length };
    } catch (e) {
      if (!(e instanceof WorkerFailure)) throw e;
      errors.push(e.message);
      log.error(`fine-tuning ${job.label} (attempt ${attempt}) failed: ${e.message}; restarting it on the remaining workers`);
      for (const w of e.culprits) reg.drop(w, 'dropped after a failure');
      reg.broadcast(members.filter((w) => reg.workers.has(w.conn)), M.Reset, () => ({ formation, reason: e.message.slice(0, 1000) }));
    }
  }
  throw new Error(`fine-tuning ${job.label} failed 3 times: ${errors.join('; ')}`);
}
