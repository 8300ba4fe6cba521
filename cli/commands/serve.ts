/** `ttc serve`: the long-running run server of a cluster (coordinator/server.ts). */
import { resolveConfig } from '../../core/config/load.ts';
import { createLogger } from '../../core/run/log.ts';
import { dashboardHint } from '../../coordinator/dashboard.ts';
import { RunServer } from '../../coordinator/server.ts';
import { loadSecret } from '../../wire/auth.ts';
import { tlsServerFromEnv } from '../../wire/net/index.ts';
import { outputDirFlag, overridesFromSets, parseFlags, parsePort } from '../args.ts';
import { INTERRUPTED_EXIT } from '../interrupt.ts';

export const usage = `ttc serve [--host H] [--port P] [--output-dir DIR] [--set key=value ...]

Runs a long-running coordinator: workers (ttc worker) connect once and stay; runs and sweeps are
submitted with \`ttc run --coordinator URL --config FILE\`, followed with \`ttc status\`, cancelled
with \`ttc cancel\`, and their reports fetched with \`ttc report\`. Runs execute one at a time on all
connected workers, in submission order. The queue survives a restart (DIR/queue.json): an
interrupted run continues from its last checkpoint. Prints "TTC_COORDINATOR_URL=ws://host:port".
  --host H          interface to listen on (default 127.0.0.1; 0.0.0.0 in a pod)   env TTC_HOST
  --port P          port (default 7070; 0 = any free port)                       env TTC_PORT
  --output-dir DIR  where run directories and queue.json go (default runs)        env TTC_OUTPUT_DIR
                    (a submitted config's outputDir is replaced by this)
  --set key=value   a setting of this cluster forced onto every submitted run (a sweep's base),
                    e.g. --set backend=tensorflow --set cacheDir=/var/cache/ttc
Secret: TTC_SECRET or TTC_SECRET_FILE (required). TLS: TTC_TLS_CERT + TTC_TLS_KEY serve wss://.`;

/** The flags, with the environment variables that give their defaults (exported for the manifest tests). */
export function serveOptions(env: NodeJS.ProcessEnv = process.env) {
  return {
    host: { type: 'string' as const, default: env.TTC_HOST ?? '127.0.0.1' },
    port: { type: 'string' as const, default: env.TTC_PORT ?? '7070' },
    'output-dir': { type: 'string' as const, default: env.TTC_OUTPUT_DIR ?? 'runs' },
    set: { type: 'string' as const, multiple: true as const },
  };
}

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, serveOptions(), usage);
  const port = parsePort(values.port);
  const outputDir = outputDirFlag('--output-dir', values['output-dir']!);
  const log = createLogger('serve');
  const overrides = overridesFromSets(values.set ?? []);
  // A bad cluster setting fails here, at start-up, not with every submission.
  resolveConfig({}, overrides);
  const server = new RunServer({ secret: loadSecret(), host: values.host!, port, tls: tlsServerFromEnv(), outputDir, overrides, log });
  const url = await server.start();
  log.info(`run server listening on ${url}; runs go to ${values['output-dir']}${values.set?.length ? `; every run gets ${values.set.join(', ')}` : ''}`);
  console.log(`TTC_COORDINATOR_URL=${url}`);
  log.info(dashboardHint(url));
  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = () => {
      if (stopping) process.exit(INTERRUPTED_EXIT);
      stopping = true;
      log.warn('shutting down: a running run continues from its last checkpoint when the server restarts');
      void server.close().then(resolve);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  return 0;
}
