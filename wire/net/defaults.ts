/** Default limits of wire/net (see docs/protocol.md, "Limits"). */
export const DEFAULTS = Object.freeze({
  /** largest frame after the handshake (ws maxPayload), bytes */
  maxPayload: 16 * 1024 * 1024,
  /** largest frame accepted before authentication, bytes */
  maxHandshakeFrame: 4096,
  /** hello → welcome must complete within this time */
  handshakeTimeoutMs: 5000,
  /** unauthenticated connections at once, per server */
  maxPendingHandshakes: 64,
  /** connect(): delay between retries while the server is not up yet */
  retryIntervalMs: 200,
});
