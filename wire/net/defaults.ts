/** Default limits of wire/net (see docs/protocol.md, "Limits", and docs/security.md). */
export const DEFAULTS = Object.freeze({
  /** largest frame after the handshake (ws maxPayload), bytes */
  maxPayload: 16 * 1024 * 1024,
  /** largest frame before authentication, bytes: ws refuses a longer one from its header, before buffering it */
  maxHandshakeFrame: 4096,
  /** server: `hello` must arrive within this time of the upgrade (a legitimate client sends it at once) */
  helloTimeoutMs: 2000,
  /** server: hello → welcome must complete within this time of the upgrade */
  handshakeTimeoutMs: 3000,
  /** client: one connect attempt (TCP, TLS, upgrade, handshake); longer, since a loaded machine may be slow to accept */
  connectTimeoutMs: 10_000,
  /** unauthenticated connections at once, per server (authenticated ones do not count) */
  maxPendingHandshakes: 64,
  /** unauthenticated connections at once from one source address (IPv6: one /64) */
  maxPendingPerSource: 16,
  /** connect(): first delay between retries; it doubles on each retry, with jitter */
  retryIntervalMs: 200,
  /** connect(): the longest delay between retries */
  maxRetryIntervalMs: 2000,
  /** connect() without retryForMs: a server that says "busy" (1013, …) is still retried this long */
  busyRetryForMs: 30_000,
});
