/**
 * safetensors (https://github.com/huggingface/safetensors) reader and writer: an 8-byte
 * little-endian header length, a JSON header {name: {dtype, shape, data_offsets}} with an
 * optional "__metadata__" map of strings, then the raw little-endian tensor bytes. Pure data,
 * nothing executable. The reader validates every field before it touches the data.
 * (No maintained safetensors package exists on npm for Node; the format is this small.)
 */
import { codedError } from '../../core/errors.ts';
export type SafeDtype = 'F32' | 'I32' | 'U8' | 'I8' | 'F16' | 'U32';

const BYTES: Record<SafeDtype, number> = { F32: 4, I32: 4, U8: 1, I8: 1, F16: 2, U32: 4 };
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface SafeTensor {
  dtype: SafeDtype;
  shape: number[];
  data: Uint8Array | Int8Array | Int32Array | Float32Array | Uint32Array | Uint16Array;
}

export const SafetensorsError = codedError('SafetensorsError', 'TTC_ERR_SAFETENSORS');
export type SafetensorsError = InstanceType<typeof SafetensorsError>;

export function encodeSafetensors(tensors: Record<string, SafeTensor>, metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const names = Object.keys(tensors);
  for (const name of names) {
    const t = tensors[name];
    const bytes = t.data.byteLength;
    const expected = t.shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype];
    if (bytes !== expected) throw new SafetensorsError(`tensor ${name}: ${bytes} bytes of data for shape [${t.shape}] ${t.dtype} (expected ${expected})`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data starts 8-byte aligned (allowed by the format).
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + headerBytes.length + offset);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, 8);
  let pos = 8 + headerBytes.length;
  for (const name of names) {
    const d = tensors[name].data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), pos);
    pos += d.byteLength;
  }
  return out;
}

function typedView(dtype: SafeDtype, bytes: Uint8Array): SafeTensor['data'] {
  // Copy into a fresh, aligned buffer: the source may be unaligned and callers may keep the result.
  const copy = new Uint8Array(bytes);
  switch (dtype) {
    case 'F32': return new Float32Array(copy.buffer);
    case 'I32': return new Int32Array(copy.buffer);
    case 'U32': return new Uint32Array(copy.buffer);
    case 'F16': return new Uint16Array(copy.buffer);
    case 'I8': return new Int8Array(copy.buffer);
    case 'U8': return copy;
  }
}

export interface DecodedSafetensors {
  tensors: Record<string, SafeTensor>;
  metadata: Record<string, string>;
}

export function decodeSafetensors(buf: Uint8Array, source = 'safetensors data'): DecodedSafetensors {
  const fail = (why: string): never => {
    throw new SafetensorsError(`${source}: ${why}`);
  };
  if (buf.byteLength < 8) fail('too short for a header');
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > buf.byteLength) fail(`header length ${headerLen} does not fit in ${buf.byteLength} bytes`);
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + 8, headerLen).toString('utf8'));
  } catch (e) {
    fail(`header is not JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');
  const dataStart = 8 + headerLen;
  const dataLen = buf.byteLength - dataStart;
  const tensors: Record<string, SafeTensor> = {};
  let metadata: Record<string, string> = {};
  const ranges: Array<[number, number]> = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Object.values(entry).some((v) => typeof v !== 'string')) fail('__metadata__ must map strings to strings');
      metadata = entry as Record<string, string>;
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) fail(`entry ${name} is not an object`);
    if (typeof e.dtype !== 'string' || !(e.dtype in BYTES)) fail(`tensor ${name}: unsupported dtype ${JSON.stringify(e.dtype)}`);
    const dtype = e.dtype as SafeDtype;
    if (!Array.isArray(e.shape) || e.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) fail(`tensor ${name}: bad shape ${JSON.stringify(e.shape)}`);
    const shape = e.shape as number[];
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || offs.some((o) => !Number.isSafeInteger(o) || o < 0)) fail(`tensor ${name}: bad data_offsets`);
    const [begin, end] = offs as [number, number];
    if (end < begin || end > dataLen) fail(`tensor ${name}: data_offsets [${begin}, ${end}] outside the ${dataLen} data bytes`);
    const expected = shape.reduce((a, b) => a * b, 1) * BYTES[dtype];
    if (end - begin !== expected) fail(`tensor ${name}: ${end - begin} bytes for shape [${shape}] ${dtype} (expected ${expected})`);
    ranges.push([begin, end]);
    tensors[name] = { dtype, shape, data: typedView(dtype, buf.subarray(dataStart + begin, dataStart + end)) };
  }
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) if (ranges[i][0] < ranges[i - 1][1]) fail('tensor data ranges overlap');
  return { tensors, metadata };
}
