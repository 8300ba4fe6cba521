/**
 * `ttc evaluate --sweep runs/<id>`: the coordinator of a sweep's compression + evaluation step, for
 * workers that connect to it (`ttc worker`; `ttc local --evaluate` starts them itself).
 */
import path from 'node:path';
import { UsageError } from '../../core/errors.ts';
import { createLogger } from '../../core/run/log.ts';
import { Driver } from '../../coordinator/formation.ts';
import { WorkerRegistry } from '../../coordinator/registry.ts';
import { readSweepDir } from '../../coordinator/sweep-config.ts';
import { evaluateSweepDir, readPretrainingResults } from '../../coordinator/sweep.ts';
import { compressTranslationSweep } from '../../coordinator/translation.ts';
import { loadSecret } from '../../wire/auth.ts';
import { tlsServerFromEnv } from '../../wire/net/index.ts';
import { parseFlags, parsePort, parseWorkers } from '../args.ts';
import { onInterrupt } from '../interrupt.ts';
import { printEvaluation } from '../sweep-output.ts';

/** How long `ttc evaluate` waits for the expected workers before it starts with fewer. */
const EXPECT_WORKERS_SECONDS = 30;

export const usage = `ttc evaluate --sweep runs/<id> [--host H] [--port P] [--workers N]

The compression + evaluation step of a sweep whose pretraining is done: fine-tunes every member,
evaluates every compression cell on the connected workers (ttc worker), writes cells.jsonl and the
report. Prints "TTC_COORDINATOR_URL=ws://host:port" once listening. Rerun to continue after a crash.
Before the first fine-tuning it waits up to ${EXPECT_WORKERS_SECONDS} s for N workers (default: the sweep's "workers"), so
that one data-parallel ring takes them all, then goes on with those connected (at least 1).
A translation sweep (base.task "translation") needs no workers: its members are compressed one-shot
and translated in this process (translation-compression.json, translation.{md,csv,svg}).`;

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, { sweep: { type: 'string' }, host: { type: 'string', default: process.env.TTC_HOST ?? '127.0.0.1' }, port: { type: 'string', default: process.env.TTC_PORT ?? '7070' }, workers: { type: 'string' } }, usage);
  if (!values.sweep) throw new UsageError(`--sweep is required\n\n${usage}`);
  const sweepDir = values.sweep;
  const sweep = readSweepDir(sweepDir);
  if (sweep.base.task === 'translation') {
    // a translation sweep's compression step is inference in this process: no workers to wait for
    const files = await compressTranslationSweep(sweepDir, sweep, readPretrainingResults(sweepDir), createLogger('evaluate', path.join(sweepDir, 'evaluate.log')));
    console.log(`translation report: ${files.join(', ')}`);
    return 0;
  }
  const expected = values.workers === undefined ? sweep.workers : parseWorkers(values.workers);
  const port = parsePort(values.port);
  const log = createLogger('evaluate', path.join(sweepDir, 'evaluate.log'));
  let phase = 'starting';
  const registry: WorkerRegistry = new WorkerRegistry({ secret: loadSecret(), host: values.host!, port, tls: tlsServerFromEnv(), name: path.basename(sweepDir), log, status: () => ({ kind: 'evaluation', runId: path.basename(sweepDir), phase, workers: registry.workerViews() }) });
  const url = await registry.listen();
  console.log(`TTC_COORDINATOR_URL=${url}`);
  const interrupt = onInterrupt(log, `interrupted: stopping after the running jobs; finished fine-tunings and cells are kept (rerun to continue; Ctrl-C again to stop at once)`);
  try {
    phase = 'waiting for workers';
    const got = await registry.waitUpTo(expected, EXPECT_WORKERS_SECONDS);
    if (got < expected) log.warn(`${got} of the ${expected} expected workers connected within ${EXPECT_WORKERS_SECONDS} s: going on with those`);
    phase = 'evaluating';
    const out = await evaluateSweepDir(sweepDir, sweep, { driver: new Driver(registry, log), log, signal: interrupt.signal, progress: (stage, done, total) => (phase = `${stage} [${done}/${total}]`) });
    phase = 'done';
    registry.stopAll(true, 'evaluation complete');
    return printEvaluation(sweepDir, out);
  } catch (e) {
    registry.stopAll(false, `evaluation failed: ${(e as Error).message}`);
    throw e;
  } finally {
    interrupt.dispose();
    await registry.close();
  }
}
