/**
 * A small, strict MessagePack codec for protocol frames.
 *
 * Wire-compatible with msgpackr (`new Packr({ moreTypes: true, useRecords: false })`):
 * typed arrays travel as the msgpackr extension 0x74 (`[typecode, ...raw little-endian bytes]`),
 * `Uint8Array`/`Buffer` as msgpack `bin`. msgpackr can read what we write and we can read what
 * msgpackr writes for the value kinds listed below.
 *
 * Why not msgpackr's own decoder: it also decodes records (whose readers are generated with
 * `new Function`), Error/RegExp/Set/Map/Date, structured-clone references and BigInts, and those
 * extensions are process-global (they cannot be switched off per instance). This decoder accepts
 * only plain data — nil, booleans, numbers, UTF-8 strings, bin, arrays, string-keyed maps and
 * numeric typed arrays — with explicit limits, and rejects everything else with a
 * {@link MsgpackError}. It never throws anything else for any input bytes.
 *
 * Zero copy: a typed array whose bytes sit at an offset aligned to its element size is returned
 * as a view on the input (no copy); otherwise its bytes are copied. The encoder writes the largest
 * typed-array field of a top-level map first and picks header widths so that its payload starts
 * at an offset that is a multiple of its element size — so on the receiving side a large
 * Float32Array is a view into the received frame.
 */
import { codedError } from '../../core/errors.ts';

export const MsgpackError = codedError('MsgpackError', 'TTC_ERR_PROTOCOL');
export type MsgpackError = InstanceType<typeof MsgpackError>;

export interface DecodeLimits {
  /** nesting depth of arrays/maps (top level = 1) */
  maxDepth: number;
  /** total number of array items + map entries in one value */
  maxItems: number;
  /** longest string, in UTF-8 bytes */
  maxStringBytes: number;
  /** longest map key, in UTF-8 bytes */
  maxKeyBytes: number;
}

export const DEFAULT_DECODE_LIMITS: Readonly<DecodeLimits> = Object.freeze({
  maxDepth: 16,
  maxItems: 100_000,
  maxStringBytes: 1 << 20,
  maxKeyBytes: 256,
});

// msgpackr's typed-array codes (index in its `typedArrays` list).
type NumericArrayCtor =
  | Int8ArrayConstructor | Uint8ArrayConstructor | Uint8ClampedArrayConstructor
  | Int16ArrayConstructor | Uint16ArrayConstructor | Int32ArrayConstructor
  | Uint32ArrayConstructor | Float32ArrayConstructor | Float64ArrayConstructor;
const TYPED_ARRAY_CODES: readonly NumericArrayCtor[] = [
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array,
  Int32Array, Uint32Array, Float32Array, Float64Array,
];
const EXT_TYPED_ARRAY = 0x74;
const EXT_UNDEFINED = 0x00;

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  // typed arrays travel in host byte order; every platform we run on is little-endian
  throw new Error('ttc protocol: big-endian hosts are not supported');
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

class Reader {
  pos = 0;
  items = 0;
  readonly view: DataView;
  constructor(readonly bytes: Uint8Array, readonly limits: DecodeLimits) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  need(n: number): void {
    if (n > this.bytes.length - this.pos) {
      throw new MsgpackError(`truncated: need ${n} more byte(s) at offset ${this.pos}, have ${this.bytes.length - this.pos}`);
    }
  }
  u8(): number { this.need(1); return this.bytes[this.pos++]!; }
  u16(): number { this.need(2); const x = this.view.getUint16(this.pos); this.pos += 2; return x; }
  u32(): number { this.need(4); const x = this.view.getUint32(this.pos); this.pos += 4; return x; }

  countItems(n: number, what: string): void {
    // every item takes at least one byte: a count larger than what is left is a lie
    if (n > this.bytes.length - this.pos) throw new MsgpackError(`${what} of ${n} items exceeds the remaining ${this.bytes.length - this.pos} bytes`);
    this.items += n;
    if (this.items > this.limits.maxItems) throw new MsgpackError(`more than ${this.limits.maxItems} items in one frame`);
  }

  str(len: number, max: number): string {
    if (len > max) throw new MsgpackError(`string of ${len} bytes exceeds the limit of ${max}`);
    this.need(len);
    const start = this.pos;
    this.pos += len;
    // short ASCII fast path (map keys, type names)
    if (len <= 32) {
      let ascii = true;
      for (let i = start; i < start + len; i++) if (this.bytes[i]! > 0x7f) { ascii = false; break; }
      if (ascii) return String.fromCharCode.apply(null, this.bytes.subarray(start, start + len) as unknown as number[]);
    }
    try {
      return utf8.decode(this.bytes.subarray(start, start + len));
    } catch {
      throw new MsgpackError(`invalid UTF-8 in string at offset ${start}`);
    }
  }

  bin(len: number): Uint8Array {
    this.need(len);
    const out = new Uint8Array(this.bytes.buffer, this.bytes.byteOffset + this.pos, len);
    this.pos += len;
    return out;
  }

  ext(len: number): unknown {
    this.need(1 + len);
    const type = this.bytes[this.pos++]!;
    if (type === EXT_UNDEFINED && len === 1) { this.pos += 1; return undefined; }
    if (type !== EXT_TYPED_ARRAY) throw new MsgpackError(`unsupported extension type 0x${type.toString(16)}`);
    if (len < 1) throw new MsgpackError('typed-array extension without a type code');
    const code = this.bytes[this.pos++]!;
    const Ctor = TYPED_ARRAY_CODES[code];
    if (!Ctor) throw new MsgpackError(`unsupported typed-array code ${code}`);
    const byteLength = len - 1;
    const size = Ctor.BYTES_PER_ELEMENT;
    if (byteLength % size !== 0) throw new MsgpackError(`${Ctor.name} payload of ${byteLength} bytes is not a multiple of ${size}`);
    const abs = this.bytes.byteOffset + this.pos;
    this.pos += byteLength;
    if (abs % size === 0) return new Ctor(this.bytes.buffer as ArrayBuffer, abs, byteLength / size);
    const copy = new Uint8Array(byteLength);
    copy.set(new Uint8Array(this.bytes.buffer, abs, byteLength));
    return new Ctor(copy.buffer, 0, byteLength / size);
  }

  array(n: number, depth: number): unknown[] {
    this.countItems(n, 'array');
    const out = new Array<unknown>(n);
    for (let i = 0; i < n; i++) out[i] = this.value(depth);
    return out;
  }

  map(n: number, depth: number): Record<string, unknown> {
    this.countItems(n, 'map');
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const key = this.key();
      if (key === '__proto__') throw new MsgpackError('map key "__proto__" is not allowed');
      if (Object.prototype.hasOwnProperty.call(out, key)) throw new MsgpackError(`duplicate map key ${JSON.stringify(key)}`);
      out[key] = this.value(depth);
    }
    return out;
  }

  key(): string {
    const b = this.u8();
    let len: number;
    if (b >= 0xa0 && b <= 0xbf) len = b & 0x1f;
    else if (b === 0xd9) len = this.u8();
    else if (b === 0xda) len = this.u16();
    else if (b === 0xdb) len = this.u32();
    else throw new MsgpackError(`map keys must be strings (got type byte 0x${b.toString(16)} at offset ${this.pos - 1})`);
    return this.str(len, this.limits.maxKeyBytes);
  }

  value(depth: number): unknown {
    const b = this.u8();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b <= 0x8f || (b >= 0x90 && b <= 0x9f) || b === 0xdc || b === 0xdd || b === 0xde || b === 0xdf) {
      if (depth + 1 > this.limits.maxDepth) throw new MsgpackError(`nesting deeper than ${this.limits.maxDepth}`);
      if (b <= 0x8f) return this.map(b & 0x0f, depth + 1);
      if (b <= 0x9f) return this.array(b & 0x0f, depth + 1);
      if (b === 0xdc) return this.array(this.u16(), depth + 1);
      if (b === 0xdd) return this.array(this.u32(), depth + 1);
      if (b === 0xde) return this.map(this.u16(), depth + 1);
      return this.map(this.u32(), depth + 1);
    }
    if (b >= 0xa0 && b <= 0xbf) return this.str(b & 0x1f, this.limits.maxStringBytes);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(this.u8());
      case 0xc5: return this.bin(this.u16());
      case 0xc6: return this.bin(this.u32());
      case 0xc7: return this.ext(this.u8());
      case 0xc8: return this.ext(this.u16());
      case 0xc9: return this.ext(this.u32());
      case 0xca: { this.need(4); const x = this.view.getFloat32(this.pos); this.pos += 4; return x; }
      case 0xcb: { this.need(8); const x = this.view.getFloat64(this.pos); this.pos += 8; return x; }
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: { this.need(8); return this.int64(this.view.getBigUint64(this.pos)); }
      case 0xd0: { this.need(1); return this.view.getInt8(this.pos++); }
      case 0xd1: { this.need(2); const x = this.view.getInt16(this.pos); this.pos += 2; return x; }
      case 0xd2: { this.need(4); const x = this.view.getInt32(this.pos); this.pos += 4; return x; }
      case 0xd3: { this.need(8); return this.int64(this.view.getBigInt64(this.pos)); }
      case 0xd4: return this.ext(1);
      case 0xd5: return this.ext(2);
      case 0xd6: return this.ext(4);
      case 0xd7: return this.ext(8);
      case 0xd8: return this.ext(16);
      case 0xd9: return this.str(this.u8(), this.limits.maxStringBytes);
      case 0xda: return this.str(this.u16(), this.limits.maxStringBytes);
      case 0xdb: return this.str(this.u32(), this.limits.maxStringBytes);
      default: throw new MsgpackError(`invalid type byte 0x${b.toString(16)} at offset ${this.pos - 1}`);
    }
  }

  int64(x: bigint): number {
    this.pos += 8;
    if (x > BigInt(Number.MAX_SAFE_INTEGER) || x < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new MsgpackError(`64-bit integer ${x} is outside the safe integer range`);
    }
    return Number(x);
  }
}

/**
 * Decode one MessagePack value that must span `bytes` exactly.
 * Throws only {@link MsgpackError}.
 */
export function decodeMsgpack(bytes: Uint8Array, limits: Partial<DecodeLimits> = {}): unknown {
  if (!(bytes instanceof Uint8Array)) throw new MsgpackError('input must be a Uint8Array');
  const r = new Reader(bytes, { ...DEFAULT_DECODE_LIMITS, ...limits });
  let value: unknown;
  try {
    value = r.value(0);
  } catch (err) {
    if (err instanceof MsgpackError) throw err;
    // RangeError from a DataView read or an allocation: still the input's fault
    throw new MsgpackError(`undecodable input: ${(err as Error).message}`);
  }
  if (r.pos !== bytes.length) throw new MsgpackError(`${bytes.length - r.pos} trailing byte(s) after the value`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

type Form = 0 | 1 | 2 | 3; // 0 = fix/8-bit form … 3 = 32-bit form (see the header writers)

const isTypedNumericArray = (x: unknown): x is Exclude<InstanceType<NumericArrayCtor>, Uint8Array> =>
  ArrayBuffer.isView(x) && !(x instanceof DataView) && !(x instanceof Uint8Array) &&
  TYPED_ARRAY_CODES.includes((x as object).constructor as NumericArrayCtor);

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (x === null || typeof x !== 'object') return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

function mapHeaderSize(n: number, form: Form): number {
  return form === 0 ? (n <= 15 ? 1 : -1) : form === 1 ? (n <= 0xffff ? 3 : -1) : form === 2 ? 5 : -1;
}
function strHeaderSize(len: number, form: Form): number {
  return form === 0 ? (len <= 31 ? 1 : -1) : form === 1 ? (len <= 0xff ? 2 : -1) : form === 2 ? (len <= 0xffff ? 3 : -1) : 5;
}
function extHeaderSize(len: number, form: Form): number {
  // ext8/16/32 header + the type byte; `len` includes the typed-array code byte
  return form === 0 ? (len <= 0xff ? 3 : -1) : form === 1 ? (len <= 0xffff ? 4 : -1) : form === 2 ? 6 : -1;
}

class Writer {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  u8(x: number): void { this.buf[this.pos++] = x; }
  u16(x: number): void { this.buf.writeUInt16BE(x, this.pos); this.pos += 2; }
  u32(x: number): void { this.buf.writeUInt32BE(x, this.pos); this.pos += 4; }

  mapHeader(n: number, form: Form = n <= 15 ? 0 : n <= 0xffff ? 1 : 2): void {
    if (form === 0) this.u8(0x80 | n);
    else if (form === 1) { this.u8(0xde); this.u16(n); }
    else { this.u8(0xdf); this.u32(n); }
  }
  arrayHeader(n: number): void {
    if (n <= 15) this.u8(0x90 | n);
    else if (n <= 0xffff) { this.u8(0xdc); this.u16(n); }
    else { this.u8(0xdd); this.u32(n); }
  }
  str(s: string, form?: Form): void {
    const len = Buffer.byteLength(s, 'utf8');
    const f: Form = form ?? (len <= 31 ? 0 : len <= 0xff ? 1 : len <= 0xffff ? 2 : 3);
    if (f === 0) this.u8(0xa0 | len);
    else if (f === 1) { this.u8(0xd9); this.u8(len); }
    else if (f === 2) { this.u8(0xda); this.u16(len); }
    else { this.u8(0xdb); this.u32(len); }
    this.pos += this.buf.write(s, this.pos, len, 'utf8');
  }
  extHeader(len: number, type: number, form: Form): void {
    if (form === 0) { this.u8(0xc7); this.u8(len); }
    else if (form === 1) { this.u8(0xc8); this.u16(len); }
    else { this.u8(0xc9); this.u32(len); }
    this.u8(type);
  }
  bytes(b: Uint8Array): void { this.buf.set(b, this.pos); this.pos += b.length; }

  typedArray(a: ArrayBufferView, form?: Form): void {
    const len = a.byteLength + 1;
    this.extHeader(len, EXT_TYPED_ARRAY, form ?? (len <= 0xff ? 0 : len <= 0xffff ? 1 : 2));
    this.u8(TYPED_ARRAY_CODES.indexOf(a.constructor as NumericArrayCtor));
    this.bytes(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  }

  number(x: number): void {
    if (Number.isInteger(x) && !Object.is(x, -0) && Number.isSafeInteger(x)) {
      if (x >= 0) {
        if (x <= 0x7f) this.u8(x);
        else if (x <= 0xff) { this.u8(0xcc); this.u8(x); }
        else if (x <= 0xffff) { this.u8(0xcd); this.u16(x); }
        else if (x <= 0xffffffff) { this.u8(0xce); this.u32(x); }
        else this.float64(x); // like msgpackr: readers then get a number, not a BigInt
      } else {
        if (x >= -32) this.u8(x + 0x100);
        else if (x >= -0x80) { this.u8(0xd0); this.buf.writeInt8(x, this.pos); this.pos += 1; }
        else if (x >= -0x8000) { this.u8(0xd1); this.buf.writeInt16BE(x, this.pos); this.pos += 2; }
        else if (x >= -0x80000000) { this.u8(0xd2); this.buf.writeInt32BE(x, this.pos); this.pos += 4; }
        else this.float64(x);
      }
    } else this.float64(x);
  }

  float64(x: number): void {
    this.u8(0xcb);
    this.buf.writeDoubleBE(x, this.pos);
    this.pos += 8;
  }

  value(x: unknown, depth: number): void {
    if (depth > 64) throw new TypeError('msgpack encode: value nested deeper than 64 levels (cycle?)');
    if (x === null || x === undefined) return this.u8(0xc0);
    switch (typeof x) {
      case 'boolean': return this.u8(x ? 0xc3 : 0xc2);
      case 'number': return this.number(x);
      case 'string': return this.str(x);
    }
    if (x instanceof Uint8Array) {
      const n = x.length;
      if (n <= 0xff) { this.u8(0xc4); this.u8(n); }
      else if (n <= 0xffff) { this.u8(0xc5); this.u16(n); }
      else { this.u8(0xc6); this.u32(n); }
      return this.bytes(x);
    }
    if (isTypedNumericArray(x)) return this.typedArray(x);
    if (Array.isArray(x)) {
      this.arrayHeader(x.length);
      for (const item of x) this.value(item, depth + 1);
      return;
    }
    if (isPlainObject(x)) {
      const keys = Object.keys(x).filter((k) => x[k] !== undefined);
      this.mapHeader(keys.length);
      for (const k of keys) { this.str(k); this.value(x[k], depth + 1); }
      return;
    }
    throw new TypeError(`msgpack encode: unsupported value of type ${describe(x)}`);
  }
}

function describe(x: unknown): string {
  if (typeof x !== 'object' || x === null) return typeof x;
  return (x as object).constructor?.name ?? 'object';
}

/** Size in bytes of the encoding `Writer.value` would produce (throws on unsupported values). */
function sizeOf(x: unknown, depth: number): number {
  if (depth > 64) throw new TypeError('msgpack encode: value nested deeper than 64 levels (cycle?)');
  if (x === null || x === undefined) return 1;
  switch (typeof x) {
    case 'boolean': return 1;
    case 'number': {
      if (Number.isInteger(x) && !Object.is(x, -0) && Number.isSafeInteger(x)) {
        if (x >= 0) return x <= 0x7f ? 1 : x <= 0xff ? 2 : x <= 0xffff ? 3 : x <= 0xffffffff ? 5 : 9;
        return x >= -32 ? 1 : x >= -0x80 ? 2 : x >= -0x8000 ? 3 : x >= -0x80000000 ? 5 : 9; // 9 = float64
      }
      return 9;
    }
    case 'string': {
      const len = Buffer.byteLength(x, 'utf8');
      return len + (len <= 31 ? 1 : len <= 0xff ? 2 : len <= 0xffff ? 3 : 5);
    }
  }
  if (x instanceof Uint8Array) return x.length + (x.length <= 0xff ? 2 : x.length <= 0xffff ? 3 : 5);
  if (isTypedNumericArray(x)) {
    const len = x.byteLength + 1;
    return len + (len <= 0xff ? 2 : len <= 0xffff ? 3 : 5) + 1;
  }
  if (Array.isArray(x)) {
    let n = x.length <= 15 ? 1 : x.length <= 0xffff ? 3 : 5;
    for (const item of x) n += sizeOf(item, depth + 1);
    return n;
  }
  if (isPlainObject(x)) {
    const keys = Object.keys(x).filter((k) => x[k] !== undefined);
    let n = keys.length <= 15 ? 1 : keys.length <= 0xffff ? 3 : 5;
    for (const k of keys) n += sizeOf(k, depth + 1) + sizeOf(x[k], depth + 1);
    return n;
  }
  throw new TypeError(`msgpack encode: unsupported value of type ${describe(x)}`);
}

interface AlignedPrefix { key: string; mapForm: Form; keyForm: Form; extForm: Form; size: number }

/**
 * For a top-level map, choose the largest multi-byte typed-array field and header widths that
 * make its payload start at a multiple of its element size. Returns undefined when there is
 * no such field (or no combination works, which cannot happen for element sizes ≤ 8).
 */
function alignedPrefix(obj: Record<string, unknown>, keys: string[]): AlignedPrefix | undefined {
  let best: string | undefined;
  let bestLen = -1;
  for (const k of keys) {
    const val = obj[k];
    if (isTypedNumericArray(val) && val.BYTES_PER_ELEMENT > 1 && val.byteLength > bestLen) { best = k; bestLen = val.byteLength; }
  }
  if (best === undefined) return undefined;
  const arr = obj[best] as ArrayBufferView & { BYTES_PER_ELEMENT: number };
  const align = arr.BYTES_PER_ELEMENT;
  const keyLen = Buffer.byteLength(best, 'utf8');
  const extLen = arr.byteLength + 1;
  let choice: AlignedPrefix | undefined;
  for (const mapForm of [0, 1, 2] as Form[]) {
    const m = mapHeaderSize(keys.length, mapForm);
    if (m < 0) continue;
    for (const keyForm of [0, 1, 2, 3] as Form[]) {
      const s = strHeaderSize(keyLen, keyForm);
      if (s < 0) continue;
      for (const extForm of [0, 1, 2] as Form[]) {
        const e = extHeaderSize(extLen, extForm);
        if (e < 0) continue;
        const size = m + s + keyLen + e + 1; // + typed-array code byte
        if (size % align === 0 && (!choice || size < choice.size)) choice = { key: best, mapForm, keyForm, extForm, size };
      }
    }
  }
  return choice;
}

/**
 * Encode a value as MessagePack into a fresh Buffer. Supported: null/undefined (nil; undefined
 * map values are omitted), booleans, numbers (integers in the smallest form, others float64),
 * strings, Uint8Array/Buffer (bin), Int8…Float64 typed arrays (msgpackr ext 0x74), arrays and
 * plain objects. Anything else throws a TypeError. `alloc(size)` supplies the output buffer (it
 * must return exactly `size` bytes; a pool may hand out a reused buffer).
 */
export function encodeMsgpack(value: unknown, alloc: (size: number) => Buffer = Buffer.allocUnsafe): Buffer {
  if (isPlainObject(value)) {
    const keys = Object.keys(value).filter((k) => value[k] !== undefined);
    const prefix = alignedPrefix(value, keys);
    if (prefix) {
      const arr = value[prefix.key] as ArrayBufferView;
      let size = prefix.size + arr.byteLength;
      for (const k of keys) if (k !== prefix.key) size += sizeOf(k, 1) + sizeOf(value[k], 1);
      const w = new Writer(alloc(size));
      w.mapHeader(keys.length, prefix.mapForm);
      w.str(prefix.key, prefix.keyForm);
      w.typedArray(arr, prefix.extForm);
      for (const k of keys) if (k !== prefix.key) { w.str(k); w.value(value[k], 1); }
      if (w.pos !== size) throw new Error(`msgpack encode: size mismatch ${w.pos} != ${size}`);
      return w.buf;
    }
  }
  const size = sizeOf(value, 0);
  const w = new Writer(alloc(size));
  w.value(value, 0);
  if (w.pos !== size) throw new Error(`msgpack encode: size mismatch ${w.pos} != ${size}`);
  return w.buf;
}
