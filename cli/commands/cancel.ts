/** `ttc cancel`: cancel a queued run of a run server, or stop a running one at its next step. */
import { UsageError } from '../../core/errors.ts';
import { M } from '../../protocol/index.ts';
import type { Message } from '../../wire/protocol/index.ts';
import { checkRunIdFlag, parseFlags } from '../args.ts';
import { CliSession, coordinatorFlag, requireCoordinator } from '../client.ts';

export const usage = `ttc cancel --coordinator URL --run ID

Cancels a queued run, or stops a running one at its next step (its checkpoints stay on the server).`;

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, { ...coordinatorFlag, run: { type: 'string' } }, usage);
  const url = requireCoordinator(values.coordinator, usage);
  if (!values.run) throw new UsageError(`--run is required\n\n${usage}`);
  checkRunIdFlag('--run', values.run);
  const session = await CliSession.open(url, 'cancel');
  try {
    const r = await session.request(() => session.connection.send(M.Cancel, { runId: values.run! }), (m): m is Message<typeof M.Cancelled> => m.t === 'coord.cancelled');
    console.log(r.state === 'cancelling' ? `run ${r.runId}: stopping at its next step (its checkpoints stay on the server)` : `run ${r.runId}: ${r.state}`);
    return 0;
  } finally {
    session.close();
  }
}
