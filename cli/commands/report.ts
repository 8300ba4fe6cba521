/** `ttc report`: fetch a run's result files from a run server. */
import path from 'node:path';
import { UsageError } from '../../core/errors.ts';
import { checkRunIdFlag, outputDirFlag, parseFlags } from '../args.ts';
import { CliSession, coordinatorFlag, requireCoordinator } from '../client.ts';
import { fetchReport } from '../fetch-report.ts';

export const usage = `ttc report --coordinator URL --run ID [--out DIR]

Fetches a run's result files from a run server into DIR (default reports/<ID>): report.html,
report.md, results.csv, plots/*.svg, summaries, metrics and logs (no checkpoints).`;

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, { ...coordinatorFlag, run: { type: 'string' }, out: { type: 'string' } }, usage);
  const url = requireCoordinator(values.coordinator, usage);
  if (!values.run) throw new UsageError(`--run is required\n\n${usage}`);
  checkRunIdFlag('--run', values.run);
  const out = outputDirFlag('--out', values.out ?? path.join('reports', values.run));
  const session = await CliSession.open(url, 'report');
  try {
    await fetchReport(session, values.run, out);
    return 0;
  } finally {
    session.close();
  }
}
