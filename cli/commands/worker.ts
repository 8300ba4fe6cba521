/** `ttc worker`: one worker process; it registers with a coordinator and does what it is told. */
import os from 'node:os';
import { UsageError } from '../../core/errors.ts';
import { createLogger } from '../../core/run/log.ts';
import { loadSecret } from '../../wire/auth.ts';
import { Worker } from '../../worker/worker.ts';
import { parseFlags, parsePort } from '../args.ts';
import { coordinatorUrl } from '../client.ts';
import { INTERRUPTED_EXIT } from '../interrupt.ts';

export const usage = `ttc worker --coordinator ws://host:port [--name N] [--listen-host H] [--advertise-host H] [--ring-port P]

Runs one worker: registers with the coordinator, joins the ring, trains. Retries until the
coordinator is up (and after losing it).
  --coordinator URL    env TTC_COORDINATOR
  --name N             env TTC_WORKER_NAME (default hostname-pid)
  --listen-host H      ring listener interface (default 127.0.0.1)            env TTC_LISTEN_HOST
  --advertise-host H   address peers use to reach this worker (default = listen host) env TTC_ADVERTISE_HOST
  --ring-port P        ring listener port (default 0 = any free port)          env TTC_RING_PORT
  --retry-seconds S    how long to keep trying to reach the coordinator (default 600)
Secret: TTC_SECRET or TTC_SECRET_FILE (required).`;

// The flags, with the environment variables that give their defaults (exported for the manifest tests).
export function workerOptions(env: NodeJS.ProcessEnv = process.env) {
  return {
    coordinator: { type: 'string' as const, default: env.TTC_COORDINATOR },
    name: { type: 'string' as const, default: env.TTC_WORKER_NAME },
    'listen-host': { type: 'string' as const, default: env.TTC_LISTEN_HOST ?? '127.0.0.1' },
    'advertise-host': { type: 'string' as const, default: env.TTC_ADVERTISE_HOST },
    'ring-port': { type: 'string' as const, default: env.TTC_RING_PORT ?? '0' },
    'retry-seconds': { type: 'string' as const, default: '600' },
  };
}

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, workerOptions(), usage);
  if (!values.coordinator) throw new UsageError(`--coordinator (or TTC_COORDINATOR) is required\n\n${usage}`);
  const retrySeconds = Number(values['retry-seconds']);
  if (!(retrySeconds >= 0)) throw new UsageError(`--retry-seconds: expected a number >= 0, got "${values['retry-seconds']}"`);
  const name = values.name ?? `${os.hostname()}-${process.pid}`;
  const log = createLogger(name);
  const worker = new Worker({
    coordinatorUrl: coordinatorUrl(values.coordinator),
    secret: loadSecret(),
    name,
    listenHost: values['listen-host']!,
    advertiseHost: values['advertise-host'] ?? values['listen-host']!,
    ringPort: parsePort(values['ring-port'], '--ring-port'),
    retryForMs: retrySeconds * 1000,
    log,
  });
  // As process 1 of a container a worker gets no default SIGTERM action: without this handler a
  // deleted pod would hang for its whole grace period. The first signal leaves cleanly; a second,
  // or a leave that takes longer than LEAVE_GRACE_MS (a coordinator being retried, a step that
  // cannot stop), exits at once.
  const onSignal = (signal: NodeJS.Signals) => {
    if (leaving) process.exit(INTERRUPTED_EXIT);
    leaving = true;
    log.warn(`worker ${name}: ${signal}: leaving the ring and the coordinator`);
    worker.leave(`worker stopped (${signal})`);
    setTimeout(() => process.exit(INTERRUPTED_EXIT), LEAVE_GRACE_MS).unref();
  };
  let leaving = false;
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    return await worker.run();
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}

/** How long a signalled worker may take to leave before it exits anyway. */
const LEAVE_GRACE_MS = 5000;
