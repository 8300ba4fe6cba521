/**
 * Shared-secret loading and the HMAC-SHA256 challenge-response used on every connection
 * (worker ↔ coordinator and peer ↔ peer). Mutual: the client proves it knows the secret over both
 * nonces, then the server proves it over the same transcript plus its own identity. Proofs are
 * compared in constant time. See docs/protocol.md for the sequence.
 */
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { NONCE_BYTES } from './protocol/messages.ts';
import { codedError } from '../core/errors.ts';

export const MIN_SECRET_BYTES = 16;
const DOMAIN = 'ttc-auth-v1';

export const SecretError = codedError('SecretError', 'TTC_ERR_SECRET');
export type SecretError = InstanceType<typeof SecretError>;

/** Accepts a string (UTF-8) or bytes; at least {@link MIN_SECRET_BYTES} bytes. */
export type SecretInput = string | Uint8Array;

export function normalizeSecret(secret: SecretInput | undefined, source = 'secret'): Buffer {
  if (secret === undefined || secret === null) {
    throw new SecretError('no shared secret: set TTC_SECRET or TTC_SECRET_FILE (e.g. a mounted Kubernetes Secret)');
  }
  const buf = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : Buffer.from(secret.buffer, secret.byteOffset, secret.byteLength);
  if (buf.length === 0) throw new SecretError(`${source} is empty: set TTC_SECRET or TTC_SECRET_FILE`);
  if (buf.length < MIN_SECRET_BYTES) {
    throw new SecretError(`${source} is ${buf.length} bytes; at least ${MIN_SECRET_BYTES} are required (e.g. \`openssl rand -hex 32\`)`);
  }
  return Buffer.from(buf); // private copy
}

/**
 * The shared secret from the environment: `TTC_SECRET` (the value itself) or `TTC_SECRET_FILE`
 * (a path, e.g. a mounted Kubernetes Secret; one trailing newline is stripped). Setting both is an
 * error. Returns undefined when neither is set; throws {@link SecretError} when set but unusable.
 */
export function tryLoadSecret(env: NodeJS.ProcessEnv = process.env): Buffer | undefined {
  const value = env.TTC_SECRET;
  const file = env.TTC_SECRET_FILE;
  if (value && file) throw new SecretError('both TTC_SECRET and TTC_SECRET_FILE are set; set only one');
  if (value) return normalizeSecret(value, 'TTC_SECRET');
  if (file) {
    let content: Buffer;
    try {
      content = readFileSync(file);
    } catch (err) {
      throw new SecretError(`TTC_SECRET_FILE=${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    let end = content.length;
    if (end > 0 && content[end - 1] === 0x0a) end--;
    if (end > 0 && content[end - 1] === 0x0d) end--;
    return normalizeSecret(content.subarray(0, end), `TTC_SECRET_FILE=${file}`);
  }
  return undefined;
}

/** Like {@link tryLoadSecret} but throws a {@link SecretError} when no secret is configured. */
export function loadSecret(env: NodeJS.ProcessEnv = process.env): Buffer {
  const s = tryLoadSecret(env);
  if (!s) return normalizeSecret(undefined);
  return s;
}

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

/** Everything both proofs are bound to. */
export interface Transcript {
  clientNonce: Uint8Array;
  serverNonce: Uint8Array;
  clientRole: string;
  clientName: string;
}

function mac(secret: Buffer, parts: (string | Uint8Array)[]): Buffer {
  const h = createHmac('sha256', secret);
  const len = Buffer.allocUnsafe(4);
  for (const p of parts) {
    const b = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
    len.writeUInt32BE(b.length, 0); // length-prefixed: no two transcripts share an encoding
    h.update(len);
    h.update(b);
  }
  return h.digest();
}

/** The client's proof: HMAC(secret, "client" ‖ nonces ‖ client identity). */
export function clientProof(secret: Buffer, t: Transcript): Buffer {
  return mac(secret, [DOMAIN, 'client', t.clientNonce, t.serverNonce, t.clientRole, t.clientName]);
}

/** The server's proof: a different label (no reflection) and also bound to the server's identity. */
export function serverProof(secret: Buffer, t: Transcript, serverRole: string, serverName: string): Buffer {
  return mac(secret, [DOMAIN, 'server', t.clientNonce, t.serverNonce, t.clientRole, t.clientName, serverRole, serverName]);
}

/** Constant-time comparison (the length is public: 32 bytes). */
export function proofsEqual(expected: Uint8Array, got: Uint8Array): boolean {
  if (expected.length !== got.length) return false;
  return timingSafeEqual(expected, got);
}

/** The per-frame MAC keys of one connection (wire/net/frame-mac.ts), one per direction. */
export interface FrameKeys {
  clientToServer: Buffer;
  serverToClient: Buffer;
}

/** HKDF-SHA256 of the secret, salted with both nonces: fresh keys for every connection, known only to its two ends. */
export function frameKeys(secret: Buffer, t: Transcript): FrameKeys {
  const salt = Buffer.concat([t.clientNonce, t.serverNonce]);
  const key = (direction: string) => Buffer.from(hkdfSync('sha256', secret, salt, `${DOMAIN}/frame/${direction}`, 32));
  return { clientToServer: key('client-to-server'), serverToClient: key('server-to-client') };
}

/**
 * The read-only token for plain HTTP (`/metrics`): HMAC-SHA256(secret, "ttc-http-read-v1") in hex.
 * Derived, so a scraper holding it cannot join a run or forge a handshake; `ttc token` prints it.
 */
export function httpReadToken(secret: Buffer): string {
  return createHmac('sha256', secret).update('ttc-http-read-v1').digest('hex');
}
