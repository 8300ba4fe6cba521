/**
 * The compressed model file ("ttc-compressed", version 1): a safetensors container whose
 * `__metadata__` names the format, its version and each parameter's encoding. The full
 * specification is docs/compression.md; in short, each parameter of the layout is stored as
 *
 *   f32          <name>          F32 [layout shape]            the dense float32 values
 *   q<k>         <name>.codes    U8  [⌈n·k/8⌉]                 bit-packed k-bit two's-complement codes
 *                <name>.scales   F32 [channels | 1]            value = code · scale
 *   sparse       <name>.mask     U8  [⌈n/8⌉]                   bit i set ⇔ element i is nonzero
 *                <name>.values   F32 [nnz]                     the nonzero values, in element order
 *   sparse-q<k>  <name>.mask     U8  [⌈n/8⌉]                   bit i set ⇔ code i is nonzero
 *                <name>.codes    U8  [⌈nnz·k/8⌉]               the nonzero codes, bit-packed
 *                <name>.scales   F32 [channels | 1]
 *
 * Which encoding a tensor gets follows the spec (encodingFor): dense weights are quantized when
 * spec.quant is given, embeddings when spec.quant.embeddings; dense weights are stored sparse when
 * a mask is given, embeddings when spec.pruneEmbeddings; biases and LayerNorm parameters are always
 * f32. decodeCompressed(encodeCompressed(w, layout, spec), layout) equals compressedWeights(w, layout,
 * spec) bit for bit: the mask applied, then the quantized tensors fake-quantized.
 *
 * Decoding only parses JSON and copies numbers; every field is validated against the layout before
 * any allocation sized from the file, and any inconsistency is a CompressedFormatError.
 */
import { decodeSafetensors, encodeSafetensors, SafetensorsError, type SafeTensor } from '../ml/checkpoint/safetensors.ts';
import type { ParamKind, ParamLayout, ParamSpec } from '../ml/model/spec.ts';
import { packBits, packedByteLength, paddingIsZero, unpackBits } from './bitpack.ts';
import { channelInfo, checkBits, dequantizeTensor, fakeQuantizeModel, quantizes, quantizeTensor, type Granularity } from './quantize.ts';
import { applyMask } from './prune.ts';
import { codedError } from '../core/errors.ts';

export const FORMAT_NAME = 'ttc-compressed';
export const FORMAT_VERSION = '1';

export type Encoding = 'f32' | 'sparse' | `q${number}` | `sparse-q${number}`;

export interface CompressSpec {
  /** quantize dense weights (and embeddings if `embeddings`) to `bits` bits */
  quant?: { bits: number; granularity: Granularity; embeddings: boolean };
  /** pruning mask over the whole flat buffer (1 = keep); its zeros are applied to every tensor */
  mask?: Uint8Array;
  /** store the embedding tables sparse too (dense weights are stored sparse whenever a mask is given) */
  pruneEmbeddings?: boolean;
  /** extra provenance strings, stored as `user.<key>` in __metadata__ */
  metadata?: Record<string, string>;
}

/** Per-parameter entry of the `tensors` metadata key. */
export interface TensorEntry {
  encoding: Encoding;
  kind: ParamKind;
  shape: number[];
  /** q / sparse-q only */
  granularity?: Granularity;
  /** sparse / sparse-q only: stored elements */
  nnz?: number;
}

export const CompressedFormatError = codedError('CompressedFormatError', 'TTC_ERR_COMPRESSED_FORMAT');
export type CompressedFormatError = InstanceType<typeof CompressedFormatError>;

function fail(why: string): never {
  throw new CompressedFormatError(`compressed model: ${why}`);
}

/** The encoding a tensor of this kind gets under the spec. */
export function encodingFor(kind: ParamKind, spec: Pick<CompressSpec, 'quant' | 'mask' | 'pruneEmbeddings'>): Encoding {
  const q = spec.quant !== undefined && quantizes(kind, spec.quant);
  const sparse = spec.mask !== undefined && (kind === 'dense' || (kind === 'embedding' && spec.pruneEmbeddings === true));
  if (q) return sparse ? `sparse-q${spec.quant!.bits}` : `q${spec.quant!.bits}`;
  return sparse ? 'sparse' : 'f32';
}

/** The weights the file decodes to, computed in memory: mask applied, then quantized tensors fake-quantized. */
export function compressedWeights(weights: Float32Array, layout: ParamLayout, spec: CompressSpec): Float32Array {
  if (weights.length !== layout.total) fail(`${weights.length} weights for a layout of ${layout.total}`);
  const w = new Float32Array(weights);
  if (spec.mask) applyMask(w, spec.mask);
  if (spec.quant) fakeQuantizeModel(w, layout, spec.quant, w);
  return w;
}

function parseEncoding(enc: unknown): { sparse: boolean; bits: number } | null {
  if (enc === 'f32') return { sparse: false, bits: 0 };
  if (enc === 'sparse') return { sparse: true, bits: 0 };
  if (typeof enc !== 'string') return null;
  const m = /^(sparse-)?q([2-8])$/.exec(enc);
  return m ? { sparse: m[1] !== undefined, bits: Number(m[2]) } : null;
}

/** Bitmask (LSB first) of the nonzero entries; returns the mask bytes and the count. */
function nonzeroMask(n: number, isNonzero: (i: number) => boolean): { bytes: Uint8Array; nnz: number } {
  const bytes = new Uint8Array(Math.ceil(n / 8));
  let nnz = 0;
  for (let i = 0; i < n; i++) {
    if (isNonzero(i)) {
      bytes[i >>> 3] |= 1 << (i & 7);
      nnz++;
    }
  }
  return { bytes, nnz };
}

function popcount(bytes: Uint8Array): number {
  let c = 0;
  for (let i = 0; i < bytes.length; i++) {
    let b = bytes[i];
    b = b - ((b >>> 1) & 0x55);
    b = (b & 0x33) + ((b >>> 2) & 0x33);
    c += (b + (b >>> 4)) & 0x0f;
  }
  return c;
}

export function encodeCompressed(weights: Float32Array, layout: ParamLayout, spec: CompressSpec): Buffer {
  if (weights.length !== layout.total) fail(`${weights.length} weights for a layout of ${layout.total}`);
  if (spec.mask && spec.mask.length !== layout.total) fail(`mask has ${spec.mask.length} entries for a layout of ${layout.total}`);
  if (spec.quant) {
    checkBits(spec.quant.bits);
    if (spec.quant.granularity !== 'channel' && spec.quant.granularity !== 'tensor') fail(`granularity must be 'channel' or 'tensor'`);
  }
  const tensors: Record<string, SafeTensor> = {};
  const entries: Record<string, TensorEntry> = {};
  const put = (name: string, t: SafeTensor): void => {
    if (Object.hasOwn(tensors, name)) fail(`stored tensor name ${name} is used twice (parameter names collide)`);
    tensors[name] = t;
  };
  let scratch = new Float32Array(0);
  for (const s of layout.specs) {
    const enc = encodingFor(s.kind, spec);
    const { sparse, bits } = parseEncoding(enc)!;
    let values = weights.subarray(s.offset, s.offset + s.size);
    let masked = false;
    if (spec.mask) {
      const m = spec.mask.subarray(s.offset, s.offset + s.size);
      let any = false;
      for (let i = 0; i < m.length && !any; i++) any = m[i] === 0;
      if (any) {
        if (scratch.length < s.size) scratch = new Float32Array(s.size);
        const v = scratch.subarray(0, s.size);
        v.set(values);
        applyMask(v, m);
        values = v;
        masked = true;
      }
    }
    const entry: TensorEntry = { encoding: enc, kind: s.kind, shape: [...s.shape] };
    if (bits === 0 && !sparse) {
      put(s.name, { dtype: 'F32', shape: [...s.shape], data: masked ? new Float32Array(values) : values });
    } else if (bits === 0) {
      const v = values;
      const { bytes, nnz } = nonzeroMask(s.size, (i) => v[i] !== 0);
      const nz = new Float32Array(nnz);
      for (let i = 0, j = 0; i < s.size; i++) if (v[i] !== 0) nz[j++] = v[i];
      put(`${s.name}.mask`, { dtype: 'U8', shape: [bytes.length], data: bytes });
      put(`${s.name}.values`, { dtype: 'F32', shape: [nnz], data: nz });
      entry.nnz = nnz;
    } else {
      const q = quantizeTensor(values, s.shape, s.kind, bits, spec.quant!.granularity);
      entry.granularity = spec.quant!.granularity;
      if (!sparse) {
        const packed = packBits(q.codes, bits);
        put(`${s.name}.codes`, { dtype: 'U8', shape: [packed.length], data: packed });
      } else {
        const codes = q.codes;
        const { bytes, nnz } = nonzeroMask(s.size, (i) => codes[i] !== 0);
        const nz = new Int8Array(nnz);
        for (let i = 0, j = 0; i < s.size; i++) if (codes[i] !== 0) nz[j++] = codes[i];
        const packed = packBits(nz, bits);
        put(`${s.name}.mask`, { dtype: 'U8', shape: [bytes.length], data: bytes });
        put(`${s.name}.codes`, { dtype: 'U8', shape: [packed.length], data: packed });
        entry.nnz = nnz;
      }
      put(`${s.name}.scales`, { dtype: 'F32', shape: [q.scales.length], data: q.scales });
    }
    entries[s.name] = entry;
  }
  const metadata: Record<string, string> = { format: FORMAT_NAME, version: FORMAT_VERSION, tensors: JSON.stringify(entries) };
  for (const [k, v] of Object.entries(spec.metadata ?? {})) {
    if (typeof v !== 'string') fail(`metadata ${k} must be a string`);
    metadata[`user.${k}`] = v;
  }
  return encodeSafetensors(tensors, metadata);
}

/** The stored tensors a parameter with this entry must have: name suffix → [dtype, length]. */
function expectedParts(s: ParamSpec, entry: TensorEntry): Array<[string, 'F32' | 'U8', number[]]> {
  const { sparse, bits } = parseEncoding(entry.encoding)!;
  const channels = bits ? channelInfo(s.shape, s.kind, entry.granularity!).channels : 0;
  if (!sparse && !bits) return [[s.name, 'F32', [...s.shape]]];
  if (!bits) return [[`${s.name}.mask`, 'U8', [Math.ceil(s.size / 8)]], [`${s.name}.values`, 'F32', [entry.nnz!]]];
  if (!sparse) return [[`${s.name}.codes`, 'U8', [packedByteLength(s.size, bits)]], [`${s.name}.scales`, 'F32', [channels]]];
  return [
    [`${s.name}.mask`, 'U8', [Math.ceil(s.size / 8)]],
    [`${s.name}.codes`, 'U8', [packedByteLength(entry.nnz!, bits)]],
    [`${s.name}.scales`, 'F32', [channels]],
  ];
}

interface Parsed {
  tensors: Record<string, SafeTensor>;
  entries: Map<string, TensorEntry>;
  metadata: Record<string, string>;
  headerBytes: number;
}

/** Container + metadata + structure (names, dtypes, shapes, sizes) validated against the layout. */
function parse(buf: Uint8Array, layout: ParamLayout): Parsed {
  if (!(buf instanceof Uint8Array)) fail('input is not a byte buffer');
  let decoded: ReturnType<typeof decodeSafetensors>;
  try {
    decoded = decodeSafetensors(buf, 'compressed model');
  } catch (e) {
    if (e instanceof SafetensorsError) throw new CompressedFormatError(e.message, { cause: e });
    throw e;
  }
  const { tensors, metadata } = decoded;
  if (metadata.format !== FORMAT_NAME) fail(`not a ${FORMAT_NAME} file (__metadata__.format = ${JSON.stringify(metadata.format)})`);
  if (metadata.version !== FORMAT_VERSION) fail(`unsupported version ${JSON.stringify(metadata.version)} (this reader knows ${FORMAT_VERSION})`);
  let raw: unknown;
  try {
    raw = JSON.parse(metadata.tensors ?? '');
  } catch {
    fail('__metadata__.tensors is missing or not JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('__metadata__.tensors is not a JSON object');
  const entries = new Map<string, TensorEntry>();
  const rawEntries = new Map(Object.entries(raw as Record<string, unknown>));
  for (const name of rawEntries.keys()) if (!layout.byName.has(name)) fail(`parameter ${name} is not in the layout`);
  const expectedNames = new Set<string>();
  for (const s of layout.specs) {
    const e = rawEntries.get(s.name) as Partial<TensorEntry> | undefined;
    if (e === undefined) fail(`parameter ${s.name} is missing`);
    if (typeof e !== 'object' || e === null || Array.isArray(e)) fail(`parameter ${s.name}: entry is not an object`);
    const enc = parseEncoding(e.encoding);
    if (!enc) fail(`parameter ${s.name}: unknown encoding ${JSON.stringify(e.encoding)}`);
    if (e.kind !== s.kind) fail(`parameter ${s.name}: kind ${JSON.stringify(e.kind)} but the layout says ${s.kind}`);
    if (!Array.isArray(e.shape) || e.shape.length !== s.shape.length || e.shape.some((d, i) => d !== s.shape[i]))
      fail(`parameter ${s.name}: shape ${JSON.stringify(e.shape)} but the layout says [${s.shape}]`);
    if (enc.bits && (s.kind === 'bias' || s.kind === 'norm')) fail(`parameter ${s.name}: ${s.kind} parameters are stored f32, not ${e.encoding}`);
    if (enc.bits) {
      if (e.granularity !== 'channel' && e.granularity !== 'tensor') fail(`parameter ${s.name}: bad granularity ${JSON.stringify(e.granularity)}`);
    } else if (e.granularity !== undefined) fail(`parameter ${s.name}: granularity given for an unquantized encoding`);
    if (enc.sparse) {
      if (!Number.isSafeInteger(e.nnz) || e.nnz! < 0 || e.nnz! > s.size) fail(`parameter ${s.name}: bad nnz ${JSON.stringify(e.nnz)} for ${s.size} elements`);
    } else if (e.nnz !== undefined) fail(`parameter ${s.name}: nnz given for a dense encoding`);
    const entry: TensorEntry = { encoding: e.encoding as Encoding, kind: s.kind, shape: [...s.shape] };
    if (enc.bits) entry.granularity = e.granularity;
    if (enc.sparse) entry.nnz = e.nnz;
    entries.set(s.name, entry);
    for (const [tname, dtype, shape] of expectedParts(s, entry)) {
      expectedNames.add(tname);
      const t = Object.hasOwn(tensors, tname) ? tensors[tname] : undefined;
      if (!t) fail(`tensor ${tname} (${entry.encoding} of ${s.name}) is missing`);
      if (t.dtype !== dtype) fail(`tensor ${tname}: dtype ${t.dtype}, expected ${dtype}`);
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) fail(`tensor ${tname}: shape [${t.shape}], expected [${shape}]`);
    }
  }
  for (const tname of Object.keys(tensors)) if (!expectedNames.has(tname)) fail(`unexpected tensor ${tname}`);
  const headerBytes = 8 + Number(new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true));
  let dataBytes = 0;
  for (const t of Object.values(tensors)) dataBytes += t.data.byteLength;
  if (headerBytes + dataBytes !== buf.length) fail(`${buf.length - headerBytes - dataBytes} bytes of the file belong to no tensor`);
  return { tensors, entries, metadata, headerBytes };
}

function checkScales(name: string, scales: Float32Array): void {
  for (let i = 0; i < scales.length; i++) {
    const s = scales[i];
    if (!(s >= 0 && s < Infinity)) fail(`tensor ${name}.scales: scale ${i} is ${s} (must be finite and ≥ 0)`);
  }
}

function checkCodes(name: string, codes: Int8Array, bits: number): void {
  const lo = -(1 << (bits - 1));
  for (let i = 0; i < codes.length; i++) if (codes[i] === lo) fail(`tensor ${name}.codes: code ${lo} is outside the symmetric ${bits}-bit range`);
}

/** Decode to the dense float32 weights of the layout (dequantized, zeros restored). */
export function decodeCompressed(buf: Uint8Array, layout: ParamLayout): Float32Array {
  const { tensors, entries } = parse(buf, layout);
  const out = new Float32Array(layout.total);
  for (const s of layout.specs) {
    const entry = entries.get(s.name)!;
    const { sparse, bits } = parseEncoding(entry.encoding)!;
    const dst = out.subarray(s.offset, s.offset + s.size);
    if (!sparse && !bits) {
      dst.set(tensors[s.name].data as Float32Array);
      continue;
    }
    let mask: Uint8Array | undefined;
    if (sparse) {
      mask = tensors[`${s.name}.mask`].data as Uint8Array;
      if (!paddingIsZero(mask, 1, s.size)) fail(`tensor ${s.name}.mask: padding bits past element ${s.size} are not zero`);
      const ones = popcount(mask);
      if (ones !== entry.nnz) fail(`tensor ${s.name}.mask: ${ones} bits set but nnz is ${entry.nnz}`);
    }
    if (!bits) {
      // sparse f32
      const vals = tensors[`${s.name}.values`].data as Float32Array;
      for (let i = 0, j = 0; i < s.size; i++) if ((mask![i >>> 3] >>> (i & 7)) & 1) dst[i] = vals[j++];
      continue;
    }
    const scales = tensors[`${s.name}.scales`].data as Float32Array;
    checkScales(s.name, scales);
    const packed = tensors[`${s.name}.codes`].data as Uint8Array;
    const count = sparse ? entry.nnz! : s.size;
    if (!paddingIsZero(packed, bits, count)) fail(`tensor ${s.name}.codes: padding bits past code ${count} are not zero`);
    const codes = unpackBits(packed, bits, count, { signed: true }) as Int8Array;
    checkCodes(s.name, codes, bits);
    const info = channelInfo(s.shape, s.kind, entry.granularity!);
    if (!sparse) {
      dequantizeTensor({ codes, scales, axis: info.axis, shape: s.shape }, dst);
      continue;
    }
    // sparse-q: walk the elements in order; the j-th set bit takes the j-th code
    const m = mask!;
    const { axis, channels, inner } = info;
    let j = 0;
    if (axis === null) {
      const sc = scales[0];
      for (let i = 0; i < s.size; i++) if ((m[i >>> 3] >>> (i & 7)) & 1) dst[i] = codes[j++] * sc;
    } else if (axis === 0) {
      for (let r = 0, i = 0; r < channels; r++) {
        const sc = scales[r];
        for (const end = i + inner; i < end; i++) if ((m[i >>> 3] >>> (i & 7)) & 1) dst[i] = codes[j++] * sc;
      }
    } else {
      for (let i = 0; i < s.size; ) for (let c = 0; c < channels; c++, i++) if ((m[i >>> 3] >>> (i & 7)) & 1) dst[i] = codes[j++] * scales[c];
    }
  }
  return out;
}

export interface CompressedSizes {
  /** = buf.length: the real file bytes */
  totalBytes: number;
  /** data bytes of the embedding tables' stored tensors */
  embeddingBytes: number;
  /** everything else: the other tensors' data bytes + the whole header (length prefix, JSON, padding) */
  nonEmbeddingBytes: number;
  /** 8 + header JSON length (counted under nonEmbeddingBytes) */
  headerBytes: number;
  /** per parameter: encoding and stored data bytes (header excluded) */
  tensors: Array<{ name: string; kind: ParamKind; encoding: Encoding; bytes: number }>;
}

/**
 * The file's bytes split between the embedding tables and the rest. Rule: every data byte belongs
 * to the parameter whose stored tensor holds it; the header (8-byte length, JSON metadata, padding)
 * is counted under non-embedding, so embeddingBytes + nonEmbeddingBytes = totalBytes = buf.length.
 * Validates the file's structure against the layout (not the values).
 */
export function compressedSizes(buf: Uint8Array, layout: ParamLayout): CompressedSizes {
  const { tensors, entries, headerBytes } = parse(buf, layout);
  let embeddingBytes = 0;
  let dataBytes = 0;
  const perTensor: CompressedSizes['tensors'] = [];
  for (const s of layout.specs) {
    const entry = entries.get(s.name)!;
    let bytes = 0;
    for (const [tname] of expectedParts(s, entry)) bytes += tensors[tname].data.byteLength;
    dataBytes += bytes;
    if (s.kind === 'embedding') embeddingBytes += bytes;
    perTensor.push({ name: s.name, kind: s.kind, encoding: entry.encoding, bytes });
  }
  return { totalBytes: buf.length, embeddingBytes, nonEmbeddingBytes: buf.length - embeddingBytes, headerBytes, tensors: perTensor };
}

/** The __metadata__ of a compressed file (format, version, tensors JSON, user.* keys), validated against the layout. */
export function compressedMetadata(buf: Uint8Array, layout: ParamLayout): Record<string, string> {
  return { ...parse(buf, layout).metadata };
}
