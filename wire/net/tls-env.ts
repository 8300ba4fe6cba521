/**
 * TLS settings from the environment (Kubernetes: mount a Secret of type kubernetes.io/tls):
 *   TTC_TLS_CERT, TTC_TLS_KEY  server certificate chain and key (PEM paths) → serve wss://
 *   TTC_TLS_CA                 CA bundle (PEM path) clients verify the server with
 *   TTC_TLS_INSECURE=1         clients skip certificate verification (testing; HMAC still applies)
 */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { TtcError } from '../../core/errors.ts';
import type { TlsServerFiles } from './server.ts';
import type { TlsClientFiles } from './client.ts';

/**
 * Checks that the PEM files named by these variables can be read and used, so that a wrong path or
 * file is refused at start-up, naming the variable, not as a bare ENOENT or OpenSSL error.
 */
function checkPem(files: Partial<Record<'TTC_TLS_CERT' | 'TTC_TLS_KEY' | 'TTC_TLS_CA', string>>): void {
  const pem: Record<string, Buffer> = {};
  for (const [name, file] of Object.entries(files)) {
    try {
      pem[name] = readFileSync(file);
    } catch (e) {
      throw new TtcError('TTC_ERR_CONFIG', `TLS: ${name}=${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  }
  try {
    createSecureContext({ cert: pem.TTC_TLS_CERT, key: pem.TTC_TLS_KEY, ca: pem.TTC_TLS_CA });
  } catch (e) {
    throw new TtcError('TTC_ERR_CONFIG', `TLS: ${Object.entries(files).map(([n, f]) => `${n}=${f}`).join(', ')}: not a usable PEM certificate, key and CA (${(e as Error).message})`);
  }
}

export function tlsServerFromEnv(env: NodeJS.ProcessEnv = process.env): TlsServerFiles | undefined {
  const cert = env.TTC_TLS_CERT;
  const key = env.TTC_TLS_KEY;
  if (!cert && !key) return undefined;
  if (!cert || !key) throw new TtcError('TTC_ERR_CONFIG', 'TLS: set both TTC_TLS_CERT and TTC_TLS_KEY (or neither)');
  checkPem({ TTC_TLS_CERT: cert, TTC_TLS_KEY: key, ...(env.TTC_TLS_CA ? { TTC_TLS_CA: env.TTC_TLS_CA } : {}) });
  return { cert, key, ...(env.TTC_TLS_CA ? { ca: env.TTC_TLS_CA } : {}) };
}

export function tlsClientFromEnv(env: NodeJS.ProcessEnv = process.env): TlsClientFiles | undefined {
  if (!env.TTC_TLS_CA && env.TTC_TLS_INSECURE !== '1' && !env.TTC_TLS_CERT) return undefined;
  if (env.TTC_TLS_CA) checkPem({ TTC_TLS_CA: env.TTC_TLS_CA });
  return {
    ...(env.TTC_TLS_CA ? { ca: env.TTC_TLS_CA } : {}),
    ...(env.TTC_TLS_INSECURE === '1' ? { rejectUnauthorized: false } : {}),
  };
}
