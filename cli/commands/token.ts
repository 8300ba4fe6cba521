/** `ttc token`: the read-only HTTP token derived from the shared secret, for Prometheus (`/metrics`) and the dashboard. */
import { dashboardUrl } from '../../coordinator/dashboard.ts';
import { httpReadToken, loadSecret } from '../../wire/auth.ts';
import { UsageError } from '../../core/errors.ts';
import { parseFlags } from '../args.ts';

export const usage = `ttc token [--url URL]

Prints the read-only token that GET /metrics and the dashboard on a coordinator or run server
require: HMAC-SHA256 of the shared secret, so it reads the metrics and the dashboard and nothing
else (it cannot join a run or pass the WebSocket handshake). For Prometheus put it in a file
(authorization: credentials_file), see docs/metrics.md.
  --url URL   print the dashboard's sign-in link instead: URL is the coordinator's address
              (ws://host:port as printed by \`ttc serve\`, or host:port); open the link once, the
              browser keeps the token in a cookie (docs/dashboard.md). The link holds the token:
              do not share it.
Secret: TTC_SECRET or TTC_SECRET_FILE (required).`;

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, { url: { type: 'string' as const } }, usage);
  const token = httpReadToken(loadSecret());
  if (values.url === undefined) {
    console.log(token);
    return 0;
  }
  let page: string;
  try {
    page = dashboardUrl(values.url);
  } catch {
    throw new UsageError(`--url ${values.url}: not a coordinator address (ws://host:port, http://host:port or host:port)\n\n${usage}`);
  }
  console.log(`${page}?token=${token}`);
  return 0;
}
