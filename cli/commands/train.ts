/** `ttc train`: one process trains one model under its budget (no workers, no network). */
import { createLogger } from '../../core/run/log.ts';
import { trainRun } from '../../ml/loop/run.ts';
import { checkRunFits } from '../../ml/loop/memory-check.ts';
import { initRunBackend } from '../../ml/loop/run-backend.ts';
import { runConfig, parseFlags } from '../args.ts';
import { onInterrupt } from '../interrupt.ts';
import { describeSummary } from '../summary.ts';

export const usage = `ttc train --config <file.json> [--set key=value ...]
ttc train --resume <runs/ID>

Trains one model in this process under the config's budget and writes runs/<id>/
(config.json, metrics.jsonl, checkpoints/, train.log, summary.json).
  --config FILE     run config (see docs/config.md)
  --set KEY=VALUE   override one config field, e.g. --set model.layers=4 --set backend=cpu
  --resume DIR      continue an interrupted run from its latest valid checkpoint
Ctrl-C finishes the current step, writes a checkpoint and exits; --resume continues it.`;

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, { config: { type: 'string' }, set: { type: 'string', multiple: true }, resume: { type: 'string' } }, usage);
  const resolved = runConfig(values, usage);
  const { config } = resolved;
  checkRunFits(config, { workers: 1, coordinator: false });
  // the backend first: a model that fits no backend here is refused before the run directory exists
  const backend = await initRunBackend(config);
  const runDir = resolved.runDir();
  const log = createLogger('', runDir.logFile);
  log.info(`run ${runDir.id}: ${runDir.dir}`);
  let training = false;
  const interrupt = onInterrupt(log, 'interrupt: finishing this step and writing a checkpoint (Ctrl-C again to quit at once)', undefined, () => training);
  try {
    const summary = await trainRun(config, runDir, { log, shouldStop: interrupt.requested, onTraining: () => (training = true), backend });
    console.log(describeSummary(summary));
    if (!summary.completed) console.log(`resume with: ttc train --resume ${runDir.dir}`);
    return 0;
  } finally {
    interrupt.dispose();
  }
}
