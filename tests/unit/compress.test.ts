import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { paramLayout, type ParamLayout, type ParamKind } from '../../ml/model/spec.ts';
import { Rng } from '../../core/rng.ts';
import {
  quantizeTensor,
  dequantizeTensor,
  fakeQuantize,
  fakeQuantizeModel,
  qmaxOf,
  QuantizeError,
  type Granularity,
} from '../../compression/quantize.ts';
import { packBits, unpackBits, packedByteLength, paddingIsZero, BitpackError } from '../../compression/bitpack.ts';
import {
  globalMagnitudeMask,
  applyMask,
  sparsityOf,
  cubicSparsity,
  iterativeSchedule,
  participatingCount,
  PruneError,
} from '../../compression/prune.ts';
import {
  encodeCompressed,
  decodeCompressed,
  compressedSizes,
  compressedWeights,
  compressedMetadata,
  encodingFor,
  CompressedFormatError,
  type CompressSpec,
} from '../../compression/format.ts';
import { encodeSafetensors, decodeSafetensors } from '../../ml/checkpoint/safetensors.ts';

const DIMS = { layers: 2, hidden: 32, heads: 4, ffn: 64, seqLen: 16, vocab: 101 };
const layout = paramLayout(DIMS);

function randomWeights(l: ParamLayout, seed: number, std = 0.05): Float32Array {
  const rng = new Rng(seed);
  const w = new Float32Array(l.total);
  for (let i = 0; i < w.length; i++) w[i] = rng.normal() * std;
  // norms near 1 as in a real model
  for (const s of l.specs) if (s.kind === 'norm' && s.name.endsWith('.weight')) for (let i = 0; i < s.size; i++) w[s.offset + i] += 1;
  return w;
}

const countKind = (kinds: ParamKind[]) => layout.specs.filter((s) => kinds.includes(s.kind)).reduce((a, s) => a + s.size, 0);

test('quantization error is at most half a step for every element, per channel and per tensor, k = 2..8', (t) => {
  const w = randomWeights(layout, 1);
  // a column / row of zeros (scale 0) and an outlier
  const q0 = layout.byName.get('encoder.layer.0.attention.self.query.weight')!;
  for (let r = 0; r < q0.shape[0]; r++) w[q0.offset + r * q0.shape[1] + 3] = 0;
  w[q0.offset + 5] = 1.7;
  let checked = 0;
  for (let bits = 2; bits <= 8; bits++) {
    const qmax = qmaxOf(bits);
    for (const granularity of ['channel', 'tensor'] as Granularity[]) {
      for (const s of layout.specs) {
        if (s.kind !== 'dense' && s.kind !== 'embedding') continue;
        const v = w.subarray(s.offset, s.offset + s.size);
        const q = quantizeTensor(v, s.shape, s.kind, bits, granularity);
        const [rows, cols] = s.shape;
        const expectAxis = granularity === 'tensor' ? null : s.kind === 'dense' ? 1 : 0;
        t.is(q.axis, expectAxis);
        t.is(q.scales.length, expectAxis === null ? 1 : expectAxis === 1 ? cols : rows);
        const deq = dequantizeTensor(q);
        t.deepEqual(fakeQuantize(v, s.shape, s.kind, bits, granularity), deq);
        for (let i = 0; i < s.size; i++) {
          const ch = expectAxis === null ? 0 : expectAxis === 1 ? i % cols : Math.floor(i / cols);
          const scale = q.scales[ch];
          const c = q.codes[i];
          if (c < -qmax || c > qmax) t.fail(`code ${c} out of range for ${bits} bits`);
          // half a step, allowing only the float32 rounding of code·scale
          const err = Math.abs(v[i] - deq[i]);
          if (err > scale / 2 + Math.abs(deq[i]) * 2 ** -24) t.fail(`${s.name}[${i}] ${bits}b ${granularity}: error ${err} > ${scale / 2}`);
          if (scale === 0 && c !== 0) t.fail('scale 0 must give code 0');
          checked++;
        }
        // the channel max maps to ±qmax exactly
        if (granularity === 'tensor') {
          let m = 0;
          for (let i = 0; i < s.size; i++) m = Math.max(m, Math.abs(v[i]));
          t.is(q.scales[0], Math.fround(m / qmax));
        }
      }
    }
  }
  // the all-zero column has scale 0 and decodes to exact zeros
  const q = quantizeTensor(w.subarray(q0.offset, q0.offset + q0.size), q0.shape, 'dense', 4, 'channel');
  t.is(q.scales[3], 0);
  t.true(checked > 100000);
});

test('quantization: zero tensor, bad bits, non-finite values', (t) => {
  const z = new Float32Array(12);
  const q = quantizeTensor(z, [3, 4], 'dense', 4, 'tensor');
  t.deepEqual(Array.from(q.scales), [0]);
  t.deepEqual(Array.from(dequantizeTensor(q)), Array.from(z));
  t.throws(() => quantizeTensor(z, [3, 4], 'dense', 1, 'tensor'), { instanceOf: QuantizeError, message: /2\.\.8/ });
  t.throws(() => quantizeTensor(z, [3, 4], 'dense', 9, 'channel'), { instanceOf: QuantizeError });
  t.throws(() => quantizeTensor(z, [3, 5], 'dense', 4, 'channel'), { instanceOf: QuantizeError, message: /expected 15/ });
  const bad = Float32Array.from([1, NaN, 2, 3]);
  t.throws(() => quantizeTensor(bad, [2, 2], 'dense', 8, 'channel'), { message: /non-finite/ });
  t.throws(() => quantizeTensor(Float32Array.from([1, Infinity, 2, 3]), [2, 2], 'embedding', 8, 'channel'), { message: /non-finite/ });
  // biases / norms: one scale even for 'channel'
  t.is(quantizeTensor(Float32Array.from([1, -2, 3]), [3], 'bias', 8, 'channel').scales.length, 1);
});

test('fakeQuantizeModel quantizes dense weights (and embeddings on request), never biases or norms', (t) => {
  const w = randomWeights(layout, 2);
  const a = fakeQuantizeModel(w, layout, { bits: 4, granularity: 'channel' });
  const b = fakeQuantizeModel(w, layout, { bits: 4, granularity: 'channel', embeddings: true });
  for (const s of layout.specs) {
    const orig = w.subarray(s.offset, s.offset + s.size);
    const expected = fakeQuantize(orig, s.shape, s.kind, 4, 'channel');
    t.deepEqual(a.subarray(s.offset, s.offset + s.size), s.kind === 'dense' ? expected : orig, s.name);
    t.deepEqual(b.subarray(s.offset, s.offset + s.size), s.kind === 'dense' || s.kind === 'embedding' ? expected : orig, s.name);
  }
  // in place
  const c = new Float32Array(w);
  t.is(fakeQuantizeModel(c, layout, { bits: 4, granularity: 'channel' }, c), c);
  t.deepEqual(c, a);
});

test('bitpack round trip for every k in 1..8 and odd lengths, signed and unsigned', (t) => {
  const rng = new Rng(3);
  for (let bits = 1; bits <= 8; bits++) {
    for (const n of [0, 1, 2, 3, 5, 7, 8, 9, 13, 63, 64, 65, 127, 1001, 4099]) {
      const len = packedByteLength(n, bits);
      t.is(len, Math.ceil((n * bits) / 8));
      // unsigned codes (offset form)
      const u = new Uint8Array(n);
      for (let i = 0; i < n; i++) u[i] = rng.int(1 << bits);
      const pu = packBits(u, bits);
      t.is(pu.length, len);
      t.true(paddingIsZero(pu, bits, n));
      t.deepEqual(unpackBits(pu, bits, n, { signed: false }), u);
      if (bits === 1) continue;
      // signed two's-complement codes over the full range
      const lo = -(1 << (bits - 1));
      const s = new Int8Array(n);
      for (let i = 0; i < n; i++) s[i] = lo + rng.int(1 << bits);
      if (n > 1) {
        s[0] = lo;
        s[n - 1] = (1 << (bits - 1)) - 1;
      }
      const ps = packBits(s, bits);
      t.is(ps.length, len);
      t.true(paddingIsZero(ps, bits, n));
      t.deepEqual(unpackBits(ps, bits, n), s);
    }
  }
  // bit order: LSB first
  t.deepEqual(Array.from(packBits(Int8Array.from([1, -1, 0, -2]), 2)), [0b10_00_11_01]);
  t.deepEqual(Array.from(packBits(Int8Array.from([1, 2, 3]), 3)), [0b11_010_001, 0b0]);
  t.throws(() => packBits(Int8Array.from([8]), 4), { instanceOf: BitpackError, message: /does not fit/ });
  t.throws(() => packBits(Uint8Array.from([4]), 2), { instanceOf: BitpackError });
  t.throws(() => unpackBits(new Uint8Array(2), 3, 6), { instanceOf: BitpackError, message: /need 3/ });
  t.throws(() => packBits(new Int8Array(2), 9), { instanceOf: BitpackError });
});

test('global magnitude pruning reaches the exact sparsity and keeps non-participating entries', (t) => {
  const w = randomWeights(layout, 4);
  // ties: many equal magnitudes, including zeros and ±x
  const ff = layout.byName.get('encoder.layer.1.intermediate.dense.weight')!;
  for (let i = 0; i < 500; i++) w[ff.offset + i] = i % 2 ? 0.01 : -0.01;
  for (let i = 500; i < 600; i++) w[ff.offset + i] = 0;
  for (const [opts, kinds] of [
    [{}, ['dense']],
    [{ embeddings: true }, ['dense', 'embedding']],
  ] as Array<[{ embeddings?: boolean }, ParamKind[]]>) {
    const n = countKind(kinds);
    t.is(participatingCount(layout, opts), n);
    for (const s of [0, 0.1, 0.5, 0.9, 0.95, 0.98, 0.3333]) {
      const mask = globalMagnitudeMask(w, layout, s, opts);
      const pruned = new Float32Array(w);
      applyMask(pruned, mask);
      let zerosMask = 0;
      let maxPruned = 0;
      let minKept = Infinity;
      for (const spec of layout.specs) {
        const part = kinds.includes(spec.kind);
        for (let i = spec.offset; i < spec.offset + spec.size; i++) {
          if (!part) {
            if (mask[i] !== 1) t.fail(`non-participating ${spec.name} pruned`);
            continue;
          }
          if (mask[i] === 0) {
            zerosMask++;
            maxPruned = Math.max(maxPruned, Math.abs(w[i]));
          } else minKept = Math.min(minKept, Math.abs(w[i]));
        }
      }
      t.is(zerosMask, Math.round(s * n), `s=${s}`);
      if (s > 0) t.true(maxPruned <= minKept, 'every pruned |w| ≤ every kept |w|');
      // sparsityOf counts zeros (the weights had 100 exact zeros already, pruned first)
      t.is(Math.round(sparsityOf(pruned, layout, kinds) * n), Math.max(Math.round(s * n), s === 0 ? 100 : 0));
      // non-participating values unchanged
      for (const spec of layout.specs) if (!kinds.includes(spec.kind)) t.deepEqual(pruned.subarray(spec.offset, spec.offset + spec.size), w.subarray(spec.offset, spec.offset + spec.size));
    }
  }
  // deterministic tie-breaking by index: the 500 tied ±0.01 entries are cut in index order
  const ties = new Float32Array(layout.total).fill(0.5);
  const n = countKind(['dense']);
  const mask = globalMagnitudeMask(ties, layout, 0.5);
  const firstDense = layout.specs.find((s) => s.kind === 'dense')!;
  const idx: number[] = [];
  for (const s of layout.specs) if (s.kind === 'dense') for (let i = s.offset; i < s.offset + s.size; i++) if (mask[i] === 0) idx.push(i);
  t.is(idx.length, Math.round(0.5 * n));
  t.is(idx[0], firstDense.offset);
  for (let i = 1; i < idx.length; i++) if (idx[i] < idx[i - 1]) t.fail('not in index order');
  t.deepEqual(globalMagnitudeMask(ties, layout, 0.5), mask);
  t.throws(() => globalMagnitudeMask(w, layout, 1.5), { instanceOf: PruneError });
  t.throws(() => globalMagnitudeMask(w.subarray(1), layout, 0.5), { instanceOf: PruneError });
  const nan = new Float32Array(w);
  nan[firstDense.offset + 3] = NaN;
  t.throws(() => globalMagnitudeMask(nan, layout, 0.5), { message: /NaN/ });
});

test('iterative pruning with a previous mask keeps earlier pruned weights pruned', (t) => {
  const w = randomWeights(layout, 5);
  let mask: Uint8Array | undefined;
  const schedule = iterativeSchedule(0.9, 4);
  for (const s of schedule) {
    // simulate fine-tuning: pruned weights drift a little if not re-masked
    const next = globalMagnitudeMask(w, layout, s, { previousMask: mask });
    if (mask) for (let i = 0; i < mask.length; i++) if (mask[i] === 0 && next[i] !== 0) t.fail('a pruned weight came back');
    mask = next;
    for (let i = 0; i < w.length; i++) if (mask[i] === 0) w[i] = 1; // large, but pruned already
  }
  let zeros = 0;
  for (const s of layout.specs) if (s.kind === 'dense') for (let i = s.offset; i < s.offset + s.size; i++) zeros += mask![i] === 0 ? 1 : 0;
  t.is(zeros, Math.round(0.9 * countKind(['dense'])));
});

test('cubic sparsity schedule: endpoints, monotone, concave shape', (t) => {
  t.is(cubicSparsity(0, 100, 0.9), 0);
  t.is(cubicSparsity(100, 100, 0.9), 0.9);
  t.is(cubicSparsity(150, 100, 0.9), 0.9);
  t.is(cubicSparsity(-5, 100, 0.9, 0.2), 0.2);
  t.is(cubicSparsity(0, 0, 0.7), 0.7);
  t.true(Math.abs(cubicSparsity(50, 100, 0.8) - 0.8 * (1 - 0.125)) < 1e-12);
  let prev = -1;
  for (let s = 0; s <= 100; s++) {
    const v = cubicSparsity(s, 100, 0.95, 0.1);
    t.true(v >= prev);
    prev = v;
  }
  // fast at first: the first half does more than half the work
  t.true(cubicSparsity(50, 100, 0.9) > 0.45);
  const sched = iterativeSchedule(0.9, 5);
  t.is(sched.length, 5);
  t.is(sched[4], 0.9);
  for (let i = 1; i < sched.length; i++) t.true(sched[i] > sched[i - 1]);
  t.deepEqual(iterativeSchedule(0.5, 1), [0.5]);
  t.throws(() => iterativeSchedule(0.5, 0), { instanceOf: PruneError });
  t.throws(() => cubicSparsity(1, 10, 1.2), { instanceOf: PruneError });
});

const SPECS: Array<[string, (mask: Uint8Array) => CompressSpec]> = [
  ['f32', () => ({})],
  ['q8 channel', () => ({ quant: { bits: 8, granularity: 'channel', embeddings: false } })],
  ['q4 channel + embeddings', () => ({ quant: { bits: 4, granularity: 'channel', embeddings: true } })],
  ['q3 tensor + embeddings', () => ({ quant: { bits: 3, granularity: 'tensor', embeddings: true } })],
  ['q2 tensor', () => ({ quant: { bits: 2, granularity: 'tensor', embeddings: false } })],
  ['sparse', (mask) => ({ mask })],
  ['sparse + embeddings', (mask) => ({ mask, pruneEmbeddings: true })],
  ['sparse-q5 channel', (mask) => ({ mask, quant: { bits: 5, granularity: 'channel', embeddings: true } })],
  ['sparse-q6 tensor + embeddings', (mask) => ({ mask, pruneEmbeddings: true, quant: { bits: 6, granularity: 'tensor', embeddings: true } })],
  ['sparse-q7 channel + embeddings', (mask) => ({ mask, pruneEmbeddings: true, quant: { bits: 7, granularity: 'channel', embeddings: true } })],
];

test('format round trip: decode(encode(w)) equals the masked, fake-quantized weights exactly', (t) => {
  const w = randomWeights(layout, 6);
  const orig = new Float32Array(w);
  const maskDense = globalMagnitudeMask(w, layout, 0.7);
  const maskAll = globalMagnitudeMask(w, layout, 0.7, { embeddings: true });
  for (const [label, mk] of SPECS) {
    const spec = mk(label.includes('embeddings') && label.startsWith('sparse') ? maskAll : maskDense);
    const buf = encodeCompressed(w, layout, spec);
    t.deepEqual(w, orig, 'encode does not modify the weights');
    const back = decodeCompressed(buf, layout);
    // expected, built independently: mask, then per-tensor fakeQuantize of the quantized kinds
    const expected = new Float32Array(w);
    if (spec.mask) applyMask(expected, spec.mask);
    for (const s of layout.specs) {
      const enc = encodingFor(s.kind, spec);
      const q = spec.quant && (s.kind === 'dense' || (s.kind === 'embedding' && spec.quant.embeddings));
      t.is(enc, q ? `${spec.mask && (s.kind === 'dense' || spec.pruneEmbeddings) ? 'sparse-' : ''}q${spec.quant!.bits}` : spec.mask && (s.kind === 'dense' || (s.kind === 'embedding' && spec.pruneEmbeddings)) ? 'sparse' : 'f32');
      if (q) {
        const v = expected.subarray(s.offset, s.offset + s.size);
        fakeQuantize(new Float32Array(v), s.shape, s.kind, spec.quant!.bits, spec.quant!.granularity, v);
      }
    }
    t.deepEqual(back, expected, label);
    t.deepEqual(compressedWeights(w, layout, spec), expected, label);
    const sizes = compressedSizes(buf, layout);
    t.is(sizes.totalBytes, buf.length);
    t.is(sizes.embeddingBytes + sizes.nonEmbeddingBytes, sizes.totalBytes);
    const meta = compressedMetadata(buf, layout);
    t.is(meta.format, 'ttc-compressed');
    t.is(meta.version, '1');
    for (const e of sizes.tensors) {
      if (e.kind === 'bias' || e.kind === 'norm') t.is(e.encoding, 'f32');
    }
  }
});

test('sizes: totalBytes equals the bytes of the file on disk; quantized and sparse files shrink', (t) => {
  const w = randomWeights(layout, 7);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ttc-compress-'));
  try {
    const sizeOf = (spec: CompressSpec, name: string) => {
      const buf = encodeCompressed(w, layout, { ...spec, metadata: { run: 'test' } });
      const file = path.join(dir, `${name}.safetensors`);
      fs.writeFileSync(file, buf);
      const onDisk = fs.statSync(file).size;
      const read = fs.readFileSync(file);
      const sizes = compressedSizes(read, layout);
      t.is(sizes.totalBytes, onDisk, name);
      t.deepEqual(decodeCompressed(read, layout), compressedWeights(w, layout, spec));
      t.is(compressedMetadata(read, layout)['user.run'], 'test');
      return sizes;
    };
    const f32 = sizeOf({}, 'f32');
    const embElems = countKind(['embedding']);
    // every f32 parameter stored at 4 bytes; the header is counted under non-embedding
    t.is(f32.embeddingBytes, embElems * 4);
    t.is(f32.nonEmbeddingBytes, (layout.total - embElems) * 4 + f32.headerBytes);
    let prevBits = Infinity;
    for (const bits of [8, 6, 4, 2]) {
      const s = sizeOf({ quant: { bits, granularity: 'channel', embeddings: true } }, `q${bits}`);
      t.true(s.totalBytes < prevBits);
      prevBits = s.totalBytes;
      t.true(s.embeddingBytes < f32.embeddingBytes);
    }
    let prev = Infinity;
    let prevQ = Infinity;
    for (const sp of [0.3, 0.5, 0.8, 0.9, 0.95, 0.98]) {
      const mask = globalMagnitudeMask(w, layout, sp, { embeddings: true });
      const s = sizeOf({ mask, pruneEmbeddings: true }, `s${sp}`);
      t.true(s.totalBytes < prev, `sparse ${sp}`);
      prev = s.totalBytes;
      const q = sizeOf({ mask, pruneEmbeddings: true, quant: { bits: 4, granularity: 'channel', embeddings: true } }, `sq${sp}`);
      t.true(q.totalBytes < prevQ, `sparse-q4 ${sp}`);
      // (at very high sparsity of this tiny model the per-channel scales and longer header outweigh the 4-bit saving)
      if (sp <= 0.8) t.true(q.totalBytes < s.totalBytes, `sparse-q4 < sparse at ${sp}`);
      prevQ = q.totalBytes;
    }
    // dense-only pruning leaves embedding bytes untouched
    const denseOnly = sizeOf({ mask: globalMagnitudeMask(w, layout, 0.9) }, 'dense-only');
    t.is(denseOnly.embeddingBytes, f32.embeddingBytes);
    t.true(denseOnly.nonEmbeddingBytes < f32.nonEmbeddingBytes);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('corrupted, truncated, mismatched or garbage files give a CompressedFormatError, never a crash', (t) => {
  const w = randomWeights(layout, 8);
  const mask = globalMagnitudeMask(w, layout, 0.6, { embeddings: true });
  const good = encodeCompressed(w, layout, { mask, pruneEmbeddings: true, quant: { bits: 4, granularity: 'channel', embeddings: true } });
  const isErr = { instanceOf: CompressedFormatError };
  t.throws(() => decodeCompressed(new Uint8Array(0), layout), { ...isErr, message: /too short/ });
  t.throws(() => decodeCompressed(good.subarray(0, good.length - 1), layout), isErr);
  t.throws(() => decodeCompressed(Buffer.concat([good, Buffer.alloc(8)]), layout), { ...isErr, message: /belong to no tensor/ });
  // another layout
  const other = paramLayout({ ...DIMS, hidden: 16, ffn: 32 });
  t.throws(() => decodeCompressed(good, other), { ...isErr, message: /shape/ });
  const classifier = paramLayout(DIMS, { kind: 'classifier', numClasses: 3 });
  t.throws(() => decodeCompressed(good, classifier), { ...isErr, message: /not in the layout|missing/ });
  // a plain checkpoint is not a compressed file
  const plain = encodeSafetensors({ x: { dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) } });
  t.throws(() => decodeCompressed(plain, layout), { ...isErr, message: /not a ttc-compressed file/ });

  // re-encode the container with edited metadata / tensors
  const { tensors, metadata } = decodeSafetensors(good);
  const entries = JSON.parse(metadata.tensors);
  const rebuild = (edit: (ts: typeof tensors, md: Record<string, string>, en: Record<string, Record<string, unknown>>) => void) => {
    const ts = { ...tensors };
    const en = JSON.parse(JSON.stringify(entries));
    const md = { ...metadata };
    edit(ts, md, en);
    md.tensors = JSON.stringify(en);
    return encodeSafetensors(ts, md);
  };
  const name = 'encoder.layer.0.attention.self.query.weight';
  t.notThrows(() => decodeCompressed(rebuild(() => {}), layout));
  t.throws(() => decodeCompressed(rebuild((_, md) => (md.version = '2')), layout), { ...isErr, message: /version/ });
  t.throws(() => decodeCompressed(rebuild((_, __, en) => delete en[name]), layout), { ...isErr, message: /missing/ });
  t.throws(() => decodeCompressed(rebuild((_, __, en) => (en[name].encoding = 'q9')), layout), { ...isErr, message: /unknown encoding/ });
  t.throws(() => decodeCompressed(rebuild((_, __, en) => (en[name].encoding = 'sparse-q3')), layout), { ...isErr, message: /shape/ });
  t.throws(() => decodeCompressed(rebuild((_, __, en) => (en[name].nnz = (en[name].nnz as number) + 1)), layout), isErr);
  t.throws(() => decodeCompressed(rebuild((_, __, en) => (en[name].granularity = 'row')), layout), { ...isErr, message: /granularity/ });
  t.throws(() => decodeCompressed(rebuild((_, __, en) => (en['encoder.layer.0.attention.self.query.bias'].encoding = 'q4')), layout), isErr);
  t.throws(() => decodeCompressed(rebuild((ts) => delete ts[`${name}.scales`]), layout), { ...isErr, message: /missing/ });
  t.throws(() => decodeCompressed(rebuild((ts) => (ts.extra = { dtype: 'U8', shape: [1], data: new Uint8Array(1) })), layout), { ...isErr, message: /unexpected tensor/ });
  t.throws(
    () => decodeCompressed(rebuild((ts) => (ts[`${name}.scales`] = { ...ts[`${name}.scales`], data: Float32Array.from(ts[`${name}.scales`].data as Float32Array, (_, i) => (i === 2 ? NaN : 1)) })), layout),
    { ...isErr, message: /scale/ },
  );
  t.throws(
    () => decodeCompressed(rebuild((ts) => (ts[`${name}.mask`] = { ...ts[`${name}.mask`], data: new Uint8Array(ts[`${name}.mask`].data.length).fill(0xff) })), layout),
    { ...isErr, message: /bits set/ },
  );
  t.throws(
    () => decodeCompressed(rebuild((ts) => (ts[`${name}.codes`] = { ...ts[`${name}.codes`], data: Uint8Array.from(ts[`${name}.codes`].data as Uint8Array, (b, i) => (i === 0 ? 0x88 : b)) })), layout),
    { ...isErr, message: /outside the symmetric/ },
  );
  t.throws(() => decodeCompressed(encodeSafetensors(tensors, { ...metadata, tensors: '[1, 2' }), layout), { ...isErr, message: /not JSON/ });
  t.throws(() => decodeCompressed(encodeSafetensors(tensors, { ...metadata, tensors: '[1, 2]' }), layout), { ...isErr, message: /not a JSON object/ });
  const proto = encodeSafetensors(tensors, { ...metadata, tensors: `{"__proto__":{"polluted":true},${metadata.tensors.slice(1)}` });
  t.throws(() => decodeCompressed(proto, layout), { ...isErr, message: /__proto__ is not in the layout/ });
  t.is(({} as Record<string, unknown>).polluted, undefined);
  // a stored tensor named __proto__ (safetensors header key) is not silently accepted
  const hdr = JSON.parse(good.subarray(8, 8 + Number(good.readBigUInt64LE(0))).toString());
  hdr.__metadata__ = metadata;
  const dataEnd = Math.max(...Object.entries(hdr).filter(([k]) => k !== '__metadata__').map(([, v]) => (v as { data_offsets: number[] }).data_offsets[1]));
  const protoJson = Buffer.from(`{"__proto__":{"dtype":"U8","shape":[4],"data_offsets":[${dataEnd},${dataEnd + 4}]},${JSON.stringify(hdr).slice(1)}`);
  const withProto = Buffer.alloc(8 + protoJson.length + dataEnd + 4);
  withProto.writeBigUInt64LE(BigInt(protoJson.length), 0);
  protoJson.copy(withProto, 8);
  good.copy(withProto, 8 + protoJson.length, 8 + Number(good.readBigUInt64LE(0)));
  t.throws(() => decodeCompressed(withProto, layout), { ...isErr, message: /belong to no tensor|unexpected/ });

  // fuzz: random byte flips, truncations and garbage: a CompressedFormatError or a full-size result
  const rng = new Rng(9);
  let errors = 0;
  for (let i = 0; i < 400; i++) {
    let b: Buffer;
    const mode = i % 4;
    if (mode === 0) {
      b = Buffer.from(good);
      for (let k = 0; k < 1 + rng.int(8); k++) b[rng.int(b.length)] = rng.int(256);
    } else if (mode === 1) {
      b = Buffer.from(good);
      const hdr = Number(b.readBigUInt64LE(0));
      for (let k = 0; k < 1 + rng.int(4); k++) b[8 + rng.int(hdr)] = rng.int(256); // header only
    } else if (mode === 2) {
      b = good.subarray(0, rng.int(good.length));
    } else {
      b = Buffer.alloc(rng.int(4096));
      for (let k = 0; k < b.length; k++) b[k] = rng.int(256);
      if (b.length >= 8 && rng.next() < 0.5) b.writeBigUInt64LE(BigInt(rng.int(b.length)), 0);
    }
    try {
      const out = decodeCompressed(b, layout);
      t.is(out.length, layout.total);
    } catch (e) {
      if (!(e instanceof CompressedFormatError)) t.fail(`fuzz ${i} (mode ${mode}): ${(e as Error).name}: ${(e as Error).message}`);
      errors++;
    }
    try {
      compressedSizes(b, layout);
    } catch (e) {
      if (!(e instanceof CompressedFormatError)) t.fail(`sizes fuzz ${i}: ${(e as Error).name}: ${(e as Error).message}`);
    }
  }
  t.true(errors > 200);
});

test('encode refuses bad inputs with a clear error', (t) => {
  const w = randomWeights(layout, 10);
  t.throws(() => encodeCompressed(w.subarray(1), layout, {}), { instanceOf: CompressedFormatError, message: /weights for a layout/ });
  t.throws(() => encodeCompressed(w, layout, { mask: new Uint8Array(3) }), { instanceOf: CompressedFormatError, message: /mask/ });
  t.throws(() => encodeCompressed(w, layout, { quant: { bits: 1, granularity: 'channel', embeddings: false } }), { instanceOf: QuantizeError });
});
