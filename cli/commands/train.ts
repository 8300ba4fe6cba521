/** `ttc train`: one process trains one model under its budget (no workers, no network). */
import { parseArgs } from 'node:util';
import { createLogger } from '../../core/run/log.ts';
import { trainRun, type RunSummary } from '../../ml/train/run.ts';
import { configAndRunDir } from '../args.ts';

export const trainUsage = `ttc train --config <file.json> [--set key=value ...]
ttc train --resume <runs/ID>

Trains one model in this process under the config's budget and writes runs/<id>/
(config.json, metrics.jsonl, checkpoints/, train.log, summary.json).
  --config FILE     run config (see docs/config.md)
  --set KEY=VALUE   override one config field, e.g. --set model.layers=4 --set backend=cpu
  --resume DIR      continue an interrupted run from its latest valid checkpoint
Ctrl-C finishes the current step, writes a checkpoint and exits; --resume continues it.`;

export function describeSummary(s: RunSummary): string {
  const verdict = s.finalValLoss < s.unigramBaseline ? 'below' : 'NOT below';
  return [
    `run ${s.runId} ${s.completed ? 'completed its budget' : 'stopped early (resumable)'}: ${s.steps}/${s.totalSteps} steps, ${s.flopsUsed.toExponential(3)} FLOPs, ${s.secondsUsed.toFixed(1)} s of training, ${s.tokensSeen.toLocaleString('en')} tokens`,
    `backend: ${s.backend} (${s.backendDetail}); model ${s.parameters.toLocaleString('en')} parameters`,
    `validation loss ${s.finalValLoss.toFixed(4)} (perplexity ${s.finalValPerplexity.toFixed(1)}), ${verdict} the uniform baseline ln(vocab) = ${s.unigramBaseline.toFixed(4)}; unigram-frequency baseline ${s.unigramEntropy.toFixed(4)}`,
    `results: ${s.runDir}/ (config.json, metrics.jsonl, checkpoints/, summary.json, train.log)`,
  ].join('\n');
}

export async function trainCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: 'string' }, set: { type: 'string', multiple: true }, resume: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    console.log(trainUsage);
    return 0;
  }
  const { config, run } = configAndRunDir(values, trainUsage);
  const log = createLogger('', run.logFile);
  log.info(`run ${run.id}: ${run.dir}`);
  let stopRequested = false;
  const onSigint = () => {
    if (stopRequested) process.exit(130);
    stopRequested = true;
    log.warn('interrupt: finishing this step and writing a checkpoint (Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  try {
    const summary = await trainRun(config, run, { log, shouldStop: () => stopRequested });
    console.log(describeSummary(summary));
    if (!summary.completed) console.log(`resume with: ttc train --resume ${run.dir}`);
    return 0;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}
