/** `ttc run`: submit a run or a sweep to a run server (`ttc serve`) and follow it to its end. */
import path from 'node:path';
import { UsageError } from '../../core/errors.ts';
import { loadConfig, readConfigFile } from '../../core/config/load.ts';
import { loadSweepConfig } from '../../coordinator/sweep-config.ts';
import { M } from '../../protocol/index.ts';
import type { Message } from '../../wire/protocol/index.ts';
import { checkRunIdFlag, outputDirFlag, overridesFromSets, parseFlags, parseSeconds } from '../args.ts';
import { CliSession, coordinatorFlag, requireCoordinator } from '../client.ts';
import { fetchReport } from '../fetch-report.ts';
import { follow } from '../follow.ts';

export const usage = `ttc run --coordinator URL --config <file.json> [--set key=value ...] [--name N] [--detach] [--report-dir DIR]

Submits a training run (a run config) or a sweep (a sweep config: sizes/grid + budgets, with its
compression + evaluation step) to a run server (\`ttc serve\`) and follows its progress to the end.
The config is validated here first, then again by the server. URL: ws://, wss://, http(s):// or
host:port (env TTC_COORDINATOR); e.g. after \`kubectl -n ttc port-forward svc/ttc-coordinator 7070\`,
--coordinator http://127.0.0.1:7070.
  --name N          run name (default: the config file's name); the run id is N-<timestamp>
  --detach          submit and return (follow later with \`ttc status --run ID --follow\`)
  --report-dir DIR  when the run is done, fetch its results into DIR (as \`ttc report\`)
Exit status: 0 when the run completes, 1 when it fails or is cancelled.
Secret: TTC_SECRET or TTC_SECRET_FILE (the cluster's shared secret).`;

/** A config file is a sweep when it has the sweep's own fields. */
function isSweepConfig(raw: unknown): boolean {
  return typeof raw === 'object' && raw !== null && ('sizes' in raw || 'grid' in raw || 'budgets' in raw);
}

function runName(file: string): string {
  const base = path.basename(file, '.json').replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[.-]+/, '');
  return base.slice(0, 100) || 'run';
}

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, {
    ...coordinatorFlag,
    config: { type: 'string' },
    set: { type: 'string', multiple: true },
    name: { type: 'string' },
    detach: { type: 'boolean' },
    'report-dir': { type: 'string' },
    interval: { type: 'string', default: '2' },
  }, usage);
  const url = requireCoordinator(values.coordinator, usage);
  if (!values.config) throw new UsageError(`--config is required\n\n${usage}`);
  if (values['report-dir']) outputDirFlag('--report-dir', values['report-dir']);
  const interval = parseSeconds('--interval', values.interval);
  // Refuse a bad config here, before anything reaches the cluster.
  const raw = readConfigFile(values.config);
  const sweep = isSweepConfig(raw);
  if (sweep && values.set?.length) throw new UsageError('--set applies to run configs; edit the sweep file (its "base" section) instead');
  const resolved = sweep ? loadSweepConfig(values.config) : loadConfig(values.config, overridesFromSets(values.set ?? []));
  checkRunIdFlag('--name', values.name);
  const name = values.name ?? runName(values.config);
  let session = await CliSession.open(url, 'run');
  try {
    const reply = await session.request(
      () => session.connection.send(M.Submit, { kind: sweep ? 'sweep' : 'train', name, config: JSON.stringify(resolved) }),
      (m): m is Message<typeof M.Submitted> => m.t === 'coord.submitted',
    );
    console.log(`submitted ${sweep ? 'sweep' : 'run'} ${reply.runId} (${reply.position === 0 ? 'starts now' : `${reply.position} run(s) ahead of it`}); results on the server in ${reply.dir}`);
    console.log(`TTC_RUN_ID=${reply.runId}`);
    if (values.detach) {
      console.log(`follow it with: ttc status --coordinator ${url} --run ${reply.runId} --follow`);
      return 0;
    }
    const followed = await follow(url, session, reply.runId, interval * 1000);
    session = followed.session;
    if (followed.state === 'done' && values['report-dir']) await fetchReport(session, reply.runId, values['report-dir']);
    return followed.state === 'done' ? 0 : 1;
  } finally {
    session.close();
  }
}
