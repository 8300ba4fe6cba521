/**
 * Core messages: the connection handshake (hello → challenge → auth → welcome) and `error`.
 * Other modules define their own types with `defineMessage` (the ring's are in collective/ring.ts).
 */
import * as v from 'valibot';
import { bytes, defineMessage, shortString, u32 } from './registry.ts';

export const NONCE_BYTES = 32;
export const PROOF_BYTES = 32; // HMAC-SHA256

/** Role names: `coordinator`, `worker`, `peer` (ring/star link), `cli`, … */
export const role = () => v.pipe(v.string(), v.regex(/^[a-z][a-z0-9-]{0,31}$/, 'role must match [a-z][a-z0-9-]{0,31}'));

/** client → server, first frame. The frame's `v` is the client's protocol version. */
export const Hello = defineMessage('hello', {
  role: role(),
  name: shortString(128),
  nonce: bytes({ length: NONCE_BYTES }),
});

/** server → client: the server's nonce. */
export const Challenge = defineMessage('challenge', {
  nonce: bytes({ length: NONCE_BYTES }),
});

/** client → server: HMAC proof that the client knows the secret. */
export const Auth = defineMessage('auth', {
  proof: bytes({ length: PROOF_BYTES }),
});

/** server → client: accepted; the server's own HMAC proof, its role and name. */
export const Welcome = defineMessage('welcome', {
  proof: bytes({ length: PROOF_BYTES }),
  role: role(),
  name: shortString(128),
});

/** Either direction, any state: the sender is about to close the connection because of `reason`. */
export const ErrorMsg = defineMessage('error', {
  code: u32(),
  reason: v.pipe(v.string(), v.maxLength(1024)),
});
