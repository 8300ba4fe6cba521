/**
 * Per-frame integrity after the handshake, on links without TLS: every data message carries a
 * 16-byte tag, AES-256-GCM used as GMAC (the message is authenticated data, nothing is encrypted)
 * under a key of its direction derived in the handshake (wire/auth.ts `frameKeys`), with the
 * message's number in that direction as the nonce. So a byte changed in transit, a message
 * injected, replayed, dropped or reordered fails the check of the next one. The tag travels as
 * the message's last WebSocket fragment (no copy of the body). GMAC runs at several GB/s with
 * AES-NI; see docs/security.md for the all-reduce's figures.
 */
import { createCipheriv, timingSafeEqual } from 'node:crypto';

export const FRAME_TAG_BYTES = 16;

export class FrameMac {
  /** messages tagged (sender) or checked (receiver) so far: the next one's number */
  count = 0;
  constructor(private readonly key: Buffer) {}

  /** The tag of the next message, made of `parts` in order; counts it. */
  next(parts: readonly Uint8Array[]): Buffer {
    const iv = Buffer.alloc(12); // 4 zero bytes, then the message number (big-endian, 64 bits)
    iv.writeUInt32BE(Math.floor(this.count / 2 ** 32), 4);
    iv.writeUInt32BE(this.count >>> 0, 8);
    this.count++;
    const gmac = createCipheriv('aes-256-gcm', this.key, iv);
    for (const p of parts) gmac.setAAD(p);
    gmac.final();
    return gmac.getAuthTag();
  }

  /** Whether `tag` is the next message's tag over `parts`; counts it either way. */
  check(parts: readonly Uint8Array[], tag: Uint8Array): boolean {
    return timingSafeEqual(this.next(parts), tag);
  }
}

/** A received message's body parts and its tag (the last 16 bytes, normally the last fragment); undefined when shorter than a tag. */
export function splitTag(parts: Buffer[]): { body: Buffer[]; tag: Buffer } | undefined {
  const last = parts[parts.length - 1];
  if (last && last.length >= FRAME_TAG_BYTES) {
    const rest = last.subarray(0, last.length - FRAME_TAG_BYTES);
    return { body: rest.length ? [...parts.slice(0, -1), rest] : parts.slice(0, -1), tag: last.subarray(last.length - FRAME_TAG_BYTES) };
  }
  const all = Buffer.concat(parts);
  if (all.length < FRAME_TAG_BYTES) return undefined;
  return { body: [all.subarray(0, all.length - FRAME_TAG_BYTES)], tag: all.subarray(all.length - FRAME_TAG_BYTES) };
}
