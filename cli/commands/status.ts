/** `ttc status`: a coordinator's state, or one run of a run server, optionally followed to its end. */
import { checkRunIdFlag, parseFlags, parseSeconds } from '../args.ts';
import { CliSession, coordinatorFlag, RefusedError, requireCoordinator } from '../client.ts';
import { describeStatus, follow } from '../follow.ts';

export const usage = `ttc status --coordinator URL [--run ID] [--follow] [--json]

Prints the coordinator's state: its workers and runs (a run server), or the run's step, budget,
loss and throughput (a single-run coordinator). --run ID shows one run of a run server; --follow
shows its progress until it ends (exit 0 when it completes). Secret: TTC_SECRET or TTC_SECRET_FILE.`;

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, { ...coordinatorFlag, run: { type: 'string' }, follow: { type: 'boolean' }, json: { type: 'boolean' }, interval: { type: 'string', default: '2' } }, usage);
  checkRunIdFlag('--run', values.run);
  const url = requireCoordinator(values.coordinator, usage);
  const interval = parseSeconds('--interval', values.interval);
  let session = await CliSession.open(url, 'status');
  try {
    const reply = await session.status(values.run);
    if (values.follow) {
      if (reply.kind !== 'server') throw new RefusedError('TTC_ERR_REFUSED', '--follow needs a run server (ttc serve); a single-run coordinator prints its own progress');
      const id = values.run ?? reply.current?.id ?? reply.runs.at(-1)?.id;
      if (!id) throw new RefusedError('TTC_ERR_REFUSED', 'the server has no runs to follow');
      const followed = await follow(url, session, id, interval * 1000);
      session = followed.session;
      return followed.state === 'done' ? 0 : 1;
    }
    console.log(values.json ? JSON.stringify(reply, null, 2) : describeStatus(reply));
    return 0;
  } finally {
    session.close();
  }
}
