/**
 * Dense k-bit packing (k = 1..8) of integer codes into bytes.
 *
 * Bit order (LSB first, little-endian): element i occupies stream bits [i·k, (i+1)·k); stream bit j
 * is bit (j mod 8) of byte ⌊j / 8⌋, and within an element its least significant bit comes first.
 * The packed length is ⌈n·k / 8⌉ bytes; the unused high bits of the last byte are 0.
 *
 * Signed codes are stored as k-bit two's complement (the low k bits of the code) and sign-extended
 * on unpacking; unsigned codes (e.g. a 1-bit mask, or offset codes c + qmax) are stored as is.
 */
import { codedError } from '../core/errors.ts';
export const BitpackError = codedError('BitpackError', 'TTC_ERR_COMPRESSION');
export type BitpackError = InstanceType<typeof BitpackError>;

function checkWidth(bits: number): void {
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) throw new BitpackError(`bit width must be an integer in 1..8, got ${bits}`);
}

/** ⌈count·bits / 8⌉ */
export function packedByteLength(count: number, bits: number): number {
  checkWidth(bits);
  if (!Number.isSafeInteger(count) || count < 0) throw new BitpackError(`bad element count ${count}`);
  return Math.ceil((count * bits) / 8);
}

/**
 * Pack the low `bits` bits of each code. Signed codes must lie in [−2^(bits−1), 2^(bits−1) − 1],
 * unsigned ones in [0, 2^bits − 1]; out-of-range codes throw (checked, never silently truncated).
 */
export function packBits(codes: Int8Array | Uint8Array, bits: number, out?: Uint8Array): Uint8Array {
  const n = codes.length;
  const len = packedByteLength(n, bits);
  const res = out ?? new Uint8Array(len);
  if (res.length < len) throw new BitpackError(`output has ${res.length} bytes, ${len} needed`);
  const signed = codes instanceof Int8Array;
  const lo = signed ? -(1 << (bits - 1)) : 0;
  const hi = signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
  const m = (1 << bits) - 1;
  if (bits === 8) {
    for (let i = 0; i < n; i++) {
      const c = codes[i];
      if (c < lo || c > hi) throw new BitpackError(`code ${c} at ${i} does not fit in ${bits} bits`);
    }
    res.set(new Uint8Array(codes.buffer, codes.byteOffset, n));
    return res;
  }
  if (bits === 4 || bits === 2) {
    // whole elements per byte: no carry between bytes
    const per = 8 / bits;
    const full = n - (n % per);
    let o = 0;
    let i = 0;
    for (; i < full; o++) {
      let b = 0;
      for (let k = 0; k < 8; k += bits, i++) {
        const c = codes[i];
        if (c < lo || c > hi) throw new BitpackError(`code ${c} at ${i} does not fit in ${bits} bits`);
        b |= (c & m) << k;
      }
      res[o] = b;
    }
    if (i < n) {
      let b = 0;
      for (let k = 0; i < n; k += bits, i++) {
        const c = codes[i];
        if (c < lo || c > hi) throw new BitpackError(`code ${c} at ${i} does not fit in ${bits} bits`);
        b |= (c & m) << k;
      }
      res[o++] = b;
    }
    if (res.length > o) res.fill(0, o, len);
    return res;
  }
  let acc = 0;
  let nbits = 0;
  let o = 0;
  for (let i = 0; i < n; i++) {
    const c = codes[i];
    if (c < lo || c > hi) throw new BitpackError(`code ${c} at ${i} does not fit in ${bits} bits`);
    acc |= (c & m) << nbits;
    nbits += bits;
    if (nbits >= 8) {
      res[o++] = acc & 0xff;
      acc >>>= 8;
      nbits -= 8;
    }
  }
  if (nbits > 0) res[o++] = acc & 0xff;
  if (res.length > o) res.fill(0, o, len);
  return res;
}

export interface UnpackOptions {
  /** sign-extend (two's complement), default true */
  signed?: boolean;
  out?: Int8Array | Uint8Array;
}

/**
 * Unpack `count` codes of `bits` bits. Throws if `packed` is shorter than ⌈count·bits/8⌉ bytes.
 * Returns an Int8Array when signed (default), else a Uint8Array (or `out`).
 */
export function unpackBits(packed: Uint8Array, bits: number, count: number, opts: UnpackOptions = {}): Int8Array | Uint8Array {
  const len = packedByteLength(count, bits);
  if (packed.length < len) throw new BitpackError(`${packed.length} packed bytes for ${count} codes of ${bits} bits (need ${len})`);
  const signed = opts.signed ?? true;
  const res = opts.out ?? (signed ? new Int8Array(count) : new Uint8Array(count));
  if (res.length < count) throw new BitpackError(`output has ${res.length} elements, ${count} needed`);
  if (bits === 8) {
    res.set(signed ? new Int8Array(packed.buffer, packed.byteOffset, count) : packed.subarray(0, count));
    return res;
  }
  const m = (1 << bits) - 1;
  const shift = 32 - bits;
  if (bits === 4 || bits === 2) {
    for (let i = 0, p = 0; i < count; p++) {
      const b = packed[p];
      for (let k = 0; k < 8 && i < count; k += bits, i++) {
        const v = (b >>> k) & m;
        res[i] = signed ? (v << shift) >> shift : v;
      }
    }
    return res;
  }
  let acc = 0;
  let nbits = 0;
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (nbits < bits) {
      acc |= packed[p++] << nbits;
      nbits += 8;
    }
    const v = acc & m;
    res[i] = signed ? (v << shift) >> shift : v;
    acc >>>= bits;
    nbits -= bits;
  }
  return res;
}

/** Whether the unused high bits of the last byte (past count·bits) are all zero. */
export function paddingIsZero(packed: Uint8Array, bits: number, count: number): boolean {
  const used = count * bits;
  const len = packedByteLength(count, bits);
  if (packed.length !== len) return false;
  const rem = used % 8;
  if (rem === 0) return true;
  return (packed[len - 1] >>> rem) === 0;
}
