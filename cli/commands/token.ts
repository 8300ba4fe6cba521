/** `ttc token`: the read-only HTTP token derived from the shared secret, for Prometheus (`/metrics`). */
import { httpReadToken, loadSecret } from '../../wire/auth.ts';
import { parseFlags } from '../args.ts';

export const usage = `ttc token

Prints the read-only token that GET /metrics on a coordinator or run server requires as
"Authorization: Bearer <token>": HMAC-SHA256 of the shared secret, so it reads the metrics and
nothing else (it cannot join a run or pass the WebSocket handshake). Put it in a file for a
Prometheus scrape config (authorization: credentials_file), see docs/metrics.md.
Secret: TTC_SECRET or TTC_SECRET_FILE (required).`;

export async function run(argv: string[]): Promise<number> {
  parseFlags(argv, {}, usage);
  console.log(httpReadToken(loadSecret()));
  return 0;
}
