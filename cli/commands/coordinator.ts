/** `ttc coordinator`: the coordinator of one distributed run, serving workers that connect to it (`ttc worker`). */
import fs from 'node:fs';
import { createLogger } from '../../core/run/log.ts';
import { createProgress } from '../../core/run/progress.ts';
import { dashboardHint } from '../../coordinator/dashboard.ts';
import { Driver } from '../../coordinator/formation.ts';
import { PretrainRun } from '../../coordinator/pretrain.ts';
import { WorkerRegistry } from '../../coordinator/registry.ts';
import { loadSecret } from '../../wire/auth.ts';
import { tlsServerFromEnv } from '../../wire/net/index.ts';
import { checkRunFits } from '../../ml/loop/memory-check.ts';
import { parseFlags, parsePort, runConfig } from '../args.ts';
import { INTERRUPTED_EXIT, onInterrupt } from '../interrupt.ts';
import { describeSummary } from '../summary.ts';

export const usage = `ttc coordinator --config <file.json> [--host H] [--port P] [--set key=value ...]
ttc coordinator --resume <runs/ID> [--host H] [--port P]

Runs the coordinator of one distributed run: waits for dist.minWorkers workers, forms the ring,
drives the budget, writes runs/<id>/ (metrics, checkpoints, summary). Prints
"TTC_COORDINATOR_URL=ws://host:port" on stdout once listening.
  --host H        interface to listen on (default 127.0.0.1; 0.0.0.0 in a pod)   env TTC_HOST
  --port P        port (default 7070; 0 = any free port)                       env TTC_PORT
  --resume DIR    continue the run in DIR from its latest checkpoint (after a coordinator restart)
Ctrl-C finishes the current step, writes a checkpoint and exits (the workers wait for a restart).
Secret: TTC_SECRET or TTC_SECRET_FILE (required). TLS: TTC_TLS_CERT + TTC_TLS_KEY serve wss://.`;

// The flags, with the environment variables that give their defaults: exported so tests can check
// the Kubernetes manifests' args and env against the parser the command really uses.
export function coordinatorOptions(env: NodeJS.ProcessEnv = process.env) {
  return {
    config: { type: 'string' as const },
    set: { type: 'string' as const, multiple: true as const },
    resume: { type: 'string' as const },
    host: { type: 'string' as const, default: env.TTC_HOST ?? '127.0.0.1' },
    port: { type: 'string' as const, default: env.TTC_PORT ?? '7070' },
  };
}

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, coordinatorOptions(), usage);
  const secret = loadSecret();
  const port = parsePort(values.port);
  const resolved = runConfig(values, usage);
  const { config } = resolved;
  // the workers check their own step when they start; here, what the coordinator holds
  checkRunFits(config, { workers: 0, coordinator: true });
  const runDir = resolved.runDir();
  const log = createLogger('coordinator', runDir.logFile);
  let live: PretrainRun | undefined;
  const registry: WorkerRegistry = new WorkerRegistry({
    secret,
    host: values.host!,
    port,
    tls: tlsServerFromEnv(),
    name: runDir.id,
    log,
    status: () => ({ kind: 'run', ...live!.status(registry.workerViews()) }),
    trainings: () => (live ? [live.sample()] : []),
  });
  const driver = new Driver(registry, log);
  const interrupt = onInterrupt(log, `interrupted: finishing this step and writing a checkpoint; continue with \`ttc coordinator --resume ${runDir.dir}\` (Ctrl-C again to quit at once)`, undefined, () => !live?.forming);
  live = new PretrainRun({ config, run: runDir, driver, log, progress: createProgress(runDir.id), stop: interrupt.signal });
  let url: string;
  try {
    url = await registry.listen();
  } catch (e) {
    // e.g. the port is in use: a run directory made just now for nothing is not left behind
    if (!values.resume) fs.rmSync(runDir.dir, { recursive: true, force: true });
    throw e;
  }
  log.info(`run ${runDir.id} (${runDir.dir}): listening on ${url}`);
  console.log(`TTC_COORDINATOR_URL=${url}`);
  log.info(dashboardHint(url));
  try {
    const summary = await live.run();
    console.log(describeSummary(summary));
    // Done: the workers exit. Stopped early: they keep retrying, so a resumed coordinator finds them.
    if (summary.completed) registry.stopAll(true, 'run complete');
    return summary.completed ? 0 : INTERRUPTED_EXIT;
  } catch (e) {
    registry.stopAll(false, `run failed: ${(e as Error).message}`);
    throw e;
  } finally {
    interrupt.dispose();
    await registry.close();
  }
}
