/**
 * TLS settings from the environment (Kubernetes: mount a Secret of type kubernetes.io/tls):
 *   TTC_TLS_CERT, TTC_TLS_KEY  server certificate chain and key (PEM paths) → serve wss://
 *   TTC_TLS_CA                 CA bundle (PEM path) clients verify the server with
 *   TTC_TLS_INSECURE=1         clients skip certificate verification (testing; HMAC still applies)
 */
import { TtcError } from '../../core/errors.ts';
import type { TlsServerFiles } from './server.ts';
import type { TlsClientFiles } from './client.ts';

export function tlsServerFromEnv(env: NodeJS.ProcessEnv = process.env): TlsServerFiles | undefined {
  const cert = env.TTC_TLS_CERT;
  const key = env.TTC_TLS_KEY;
  if (!cert && !key) return undefined;
  if (!cert || !key) throw new TtcError('TTC_ERR_CONFIG', 'TLS: set both TTC_TLS_CERT and TTC_TLS_KEY (or neither)');
  return { cert, key, ...(env.TTC_TLS_CA ? { ca: env.TTC_TLS_CA } : {}) };
}

export function tlsClientFromEnv(env: NodeJS.ProcessEnv = process.env): TlsClientFiles | undefined {
  if (!env.TTC_TLS_CA && env.TTC_TLS_INSECURE !== '1' && !env.TTC_TLS_CERT) return undefined;
  return {
    ...(env.TTC_TLS_CA ? { ca: env.TTC_TLS_CA } : {}),
    ...(env.TTC_TLS_INSECURE === '1' ? { rejectUnauthorized: false } : {}),
  };
}
