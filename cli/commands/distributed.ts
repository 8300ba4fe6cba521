/** `ttc coordinator` and `ttc worker`: the processes of a distributed run. */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { createLogger } from '../../core/run/log.ts';
import { createProgress } from '../../core/run/progress.ts';
import { loadSecret } from '../../wire/auth.ts';
import { tlsServerFromEnv } from '../../wire/net/index.ts';
import { Coordinator } from '../../coordinator/coordinator.ts';
import { Worker } from '../../worker/worker.ts';
import { configAndRunDir } from '../args.ts';
import { UsageError } from '../../core/errors.ts';
import { describeSummary } from './train.ts';

export const coordinatorUsage = `ttc coordinator --config <file.json> [--host H] [--port P] [--set key=value ...]
ttc coordinator --resume <runs/ID> [--host H] [--port P]

Runs the coordinator of one distributed run: waits for dist.minWorkers workers, forms the ring,
drives the budget, writes runs/<id>/ (metrics, checkpoints, summary). Prints
"TTC_COORDINATOR_URL=ws://host:port" on stdout once listening.
  --host H        interface to listen on (default 127.0.0.1; 0.0.0.0 in a pod)   env TTC_HOST
  --port P        port (default 7070; 0 = any free port)                       env TTC_PORT
  --resume DIR    continue the run in DIR from its latest checkpoint (after a coordinator restart)
Secret: TTC_SECRET or TTC_SECRET_FILE (required). TLS: TTC_TLS_CERT + TTC_TLS_KEY serve wss://.`;

export const workerUsage = `ttc worker --coordinator ws://host:port [--name N] [--listen-host H] [--advertise-host H] [--ring-port P]

Runs one worker: registers with the coordinator, joins the ring, trains. Retries until the
coordinator is up (and after losing it).
  --coordinator URL    env TTC_COORDINATOR
  --name N             env TTC_WORKER_NAME (default hostname-pid)
  --listen-host H      ring listener interface (default 127.0.0.1)            env TTC_LISTEN_HOST
  --advertise-host H   address peers use to reach this worker (default = listen host) env TTC_ADVERTISE_HOST
  --ring-port P        ring listener port (default 0 = any free port)          env TTC_RING_PORT
  --retry-seconds S    how long to keep trying to reach the coordinator (default 600)
Secret: TTC_SECRET or TTC_SECRET_FILE (required).`;

// The flags, with the environment variables that give their defaults: exported so tests can check
// the Kubernetes manifests' args and env against the parser the command really uses.
export function coordinatorOptions(env: NodeJS.ProcessEnv = process.env) {
  return {
    config: { type: 'string' as const },
    set: { type: 'string' as const, multiple: true as const },
    resume: { type: 'string' as const },
    host: { type: 'string' as const, default: env.TTC_HOST ?? '127.0.0.1' },
    port: { type: 'string' as const, default: env.TTC_PORT ?? '7070' },
    help: { type: 'boolean' as const, short: 'h' },
  };
}

export function workerOptions(env: NodeJS.ProcessEnv = process.env) {
  return {
    coordinator: { type: 'string' as const, default: env.TTC_COORDINATOR },
    name: { type: 'string' as const, default: env.TTC_WORKER_NAME },
    'listen-host': { type: 'string' as const, default: env.TTC_LISTEN_HOST ?? '127.0.0.1' },
    'advertise-host': { type: 'string' as const, default: env.TTC_ADVERTISE_HOST },
    'ring-port': { type: 'string' as const, default: env.TTC_RING_PORT ?? '0' },
    'retry-seconds': { type: 'string' as const, default: '600' },
    help: { type: 'boolean' as const, short: 'h' },
  };
}

export async function coordinatorCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: coordinatorOptions() });
  if (values.help) {
    console.log(coordinatorUsage);
    return 0;
  }
  const secret = loadSecret();
  const { config, run } = configAndRunDir(values, coordinatorUsage);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port: expected 0..65535, got "${values.port}"`);
  const log = createLogger('coordinator', run.logFile);
  const coordinator = new Coordinator({ config, run, secret, host: values.host!, port, tls: tlsServerFromEnv(), log, progress: createProgress(run.id) });
  const url = await coordinator.listen();
  log.info(`run ${run.id} (${run.dir}): listening on ${url}`);
  console.log(`TTC_COORDINATOR_URL=${url}`);
  let stopping = false;
  const onSignal = () => {
    if (stopping) process.exit(130);
    stopping = true;
    log.warn('interrupted: the run can be continued with `ttc coordinator --resume ' + run.dir + '`');
    void coordinator.close().then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const summary = await coordinator.run();
    console.log(describeSummary(summary));
    return 0;
  } finally {
    await coordinator.close();
  }
}

export async function workerCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: workerOptions() });
  if (values.help) {
    console.log(workerUsage);
    return 0;
  }
  if (!values.coordinator) throw new UsageError(`--coordinator (or TTC_COORDINATOR) is required\n\n${workerUsage}`);
  const name = values.name ?? `${os.hostname()}-${process.pid}`;
  const worker = new Worker({
    coordinatorUrl: values.coordinator,
    secret: loadSecret(),
    name,
    listenHost: values['listen-host']!,
    advertiseHost: values['advertise-host'] ?? values['listen-host']!,
    ringPort: Number(values['ring-port']),
    retryForMs: Number(values['retry-seconds']) * 1000,
    log: createLogger(name),
  });
  return worker.run();
}
