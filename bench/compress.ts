/**
 * Throughput of the compression primitives (compression) on a 5.3M-parameter layout
 * (L4, d256, ffn 1024, vocab 8000, seqLen 128): quantization, global magnitude pruning, bit packing,
 * and encoding / decoding the compressed file format. MB/s are of float32 input (4 bytes per element
 * processed); medians over repeated runs.
 *
 *   node --import tsx bench/compress.ts [--quick] [--json]
 */
import { paramLayout } from '../ml/model/spec.ts';
import { Rng } from '../core/rng.ts';
import { quantizeTensor, dequantizeTensor, fakeQuantizeModel, quantizes, type Granularity } from '../compression/quantize.ts';
import { packBits, unpackBits } from '../compression/bitpack.ts';
import { globalMagnitudeMask, participatingCount } from '../compression/prune.ts';
import { encodeCompressed, decodeCompressed, compressedSizes, type CompressSpec } from '../compression/format.ts';

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const JSON_OUT = argv.includes('--json');
const MIN_MS = QUICK ? 300 : 1200;
const MAX_REPS = QUICK ? 5 : 15;

const dims = { layers: 4, hidden: 256, heads: 4, ffn: 1024, seqLen: 128, vocab: 8000 };
const layout = paramLayout(dims);
const rng = new Rng(1);
const weights = new Float32Array(layout.total);
for (let i = 0; i < weights.length; i++) weights[i] = rng.normal() * 0.02;

interface Row {
  op: string;
  elements: number;
  ms: number;
  mbps: number;
  note?: string;
}
const rows: Row[] = [];

function time(op: string, elements: number, fn: () => unknown, note?: string): void {
  fn(); // warm-up (JIT)
  const times: number[] = [];
  const start = performance.now();
  while (times.length < MAX_REPS && (times.length < 3 || performance.now() - start < MIN_MS)) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const ms = times[times.length >> 1];
  rows.push({ op, elements, ms, mbps: (elements * 4) / 1e6 / (ms / 1e3), note });
  if (!JSON_OUT) process.stderr.write(`  ${op}: ${ms.toFixed(1)} ms\n`);
}

const denseSpecs = layout.specs.filter((s) => s.kind === 'dense');
const quantSpecs = layout.specs.filter((s) => quantizes(s.kind, { embeddings: true }));
const nDense = denseSpecs.reduce((a, s) => a + s.size, 0);
const nQuant = quantSpecs.reduce((a, s) => a + s.size, 0);

if (!JSON_OUT) {
  console.error(`layout: ${layout.total.toLocaleString()} parameters (${nDense.toLocaleString()} dense, ${(nQuant - nDense).toLocaleString()} embedding)`);
}

// quantization: codes + scales of every dense weight and embedding table
for (const granularity of ['channel', 'tensor'] as Granularity[]) {
  for (const bits of [8, 4, 2]) {
    time(`quantize k=${bits} per ${granularity}`, nQuant, () => {
      for (const s of quantSpecs) quantizeTensor(weights.subarray(s.offset, s.offset + s.size), s.shape, s.kind, bits, granularity);
    });
  }
}
{
  const qs = quantSpecs.map((s) => quantizeTensor(weights.subarray(s.offset, s.offset + s.size), s.shape, s.kind, 4, 'channel'));
  const out = new Float32Array(layout.total);
  time('dequantize k=4 per channel', nQuant, () => {
    qs.forEach((q, i) => dequantizeTensor(q, out.subarray(quantSpecs[i].offset, quantSpecs[i].offset + quantSpecs[i].size)));
  });
  time('fakeQuantizeModel k=4 per channel (+emb)', nQuant, () => fakeQuantizeModel(weights, layout, { bits: 4, granularity: 'channel', embeddings: true }, out));
}

// global magnitude pruning
for (const embeddings of [false, true]) {
  const n = participatingCount(layout, { embeddings });
  for (const s of [0.5, 0.9]) time(`prune global s=${s}${embeddings ? ' (+emb)' : ''}`, n, () => globalMagnitudeMask(weights, layout, s, { embeddings }));
}
{
  // reference: what a full sort of |w| costs (the selection replaces it)
  const abs = new Float32Array(nDense);
  time('(reference: sort all dense |w|)', nDense, () => {
    let j = 0;
    for (const s of denseSpecs) for (let i = s.offset; i < s.offset + s.size; i++) abs[j++] = Math.abs(weights[i]);
    abs.sort();
  });
}

// bit packing of one code per parameter
{
  const n = layout.total;
  for (const bits of [8, 4, 2]) {
    const codes = new Int8Array(n);
    const half = 1 << (bits - 1);
    for (let i = 0; i < n; i++) codes[i] = rng.int(2 * half - 1) - (half - 1);
    const packed = packBits(codes, bits);
    const out = new Int8Array(n);
    const buf = new Uint8Array(packed.length);
    time(`bitpack k=${bits}`, n, () => packBits(codes, bits, buf));
    time(`bitunpack k=${bits}`, n, () => unpackBits(packed, bits, n, { out }));
  }
}

// file format
const maskDense = globalMagnitudeMask(weights, layout, 0.9);
const maskAll = globalMagnitudeMask(weights, layout, 0.9, { embeddings: true });
const formats: Array<[string, CompressSpec]> = [
  ['f32', {}],
  ['q8 channel (+emb)', { quant: { bits: 8, granularity: 'channel', embeddings: true } }],
  ['q4 channel (+emb)', { quant: { bits: 4, granularity: 'channel', embeddings: true } }],
  ['q2 tensor', { quant: { bits: 2, granularity: 'tensor', embeddings: false } }],
  ['sparse s=0.9', { mask: maskDense }],
  ['sparse s=0.9 (+emb)', { mask: maskAll, pruneEmbeddings: true }],
  ['sparse-q4 s=0.9 (+emb)', { mask: maskAll, pruneEmbeddings: true, quant: { bits: 4, granularity: 'channel', embeddings: true } }],
];
const f32Bytes = layout.total * 4;
for (const [name, spec] of formats) {
  const buf = encodeCompressed(weights, layout, spec);
  const sz = compressedSizes(buf, layout);
  const note = `${(buf.length / 1e6).toFixed(2)} MB (${((100 * buf.length) / f32Bytes).toFixed(1)}%), non-emb ${(sz.nonEmbeddingBytes / 1e6).toFixed(2)} MB`;
  time(`encode ${name}`, layout.total, () => encodeCompressed(weights, layout, spec), note);
  time(`decode ${name}`, layout.total, () => decodeCompressed(buf, layout));
}

// Evaluation throughput: what one compression cell of the evaluation step costs (a real model of
// the npm start sweep's middle size, the real classification dev/test sets, the wasm + fast backend).
const evalRows: Array<{ op: string; ms: number; rate: string }> = [];
{
  const { initBackend } = await import('../ml/backend.ts');
  const { resolveConfig } = await import('../core/config/load.ts');
  const { loadEvalContext, evaluateCell, classifierAccuracy, mlmPerplexity } = await import('../compression/eval/index.ts');
  const { initialWeights } = await import('../ml/model/weights.ts');
  const backend = await initBackend('auto', { threads: 0 });
  const config = resolveConfig({ model: { layers: 2, hidden: 128, heads: 2, ffn: 512, seqLen: 64, vocab: 4000 }, data: { maxValidationSequences: 128 } });
  const ctx = await loadEvalContext({ config, classificationSeed: config.seed, maxDev: QUICK ? 200 : 1000, maxTest: QUICK ? 200 : 1000 });
  const cls = initialWeights(ctx.clsLayout, 1, 0.02);
  const mlm = initialWeights(ctx.mlmLayout, 2, 0.02);
  const examples = ctx.dev.count + ctx.test.count;
  const timeIt = async (op: string, fn: () => Promise<unknown>, rate: (ms: number) => string) => {
    await fn();
    const t0 = performance.now();
    await fn();
    const ms = performance.now() - t0;
    evalRows.push({ op, ms, rate: rate(ms) });
  };
  await timeIt(`classifier accuracy, dev + test (${examples} glosses)`, () => classifierAccuracy(ctx, cls), (ms) => `${((examples * 1000) / ms).toFixed(0)} examples/s`);
  const tokens = ctx.valBatches.reduce((a, b) => a + b.inputIds.length, 0);
  await timeIt(`MLM validation perplexity (${tokens} tokens)`, () => mlmPerplexity(ctx, mlm), (ms) => `${((tokens * 1000) / ms).toFixed(0)} tokens/s`);
  for (const spec of [{ method: 'quant', bits: 4, granularity: 'channel', embeddings: false }, { method: 'prune-oneshot', sparsity: 0.9, embeddings: false }] as const) {
    await timeIt(`evaluateCell ${spec.method} (encode, decode, accuracy, perplexity)`, () => evaluateCell(ctx, cls, mlm, spec, { seed: 1 }), (ms) => `${(60_000 / ms).toFixed(1)} cells/min`);
  }
  evalRows.push({ op: `backend: ${backend.detail}`, ms: NaN, rate: '' });
}

if (JSON_OUT) {
  console.log(JSON.stringify({ dims, parameters: layout.total, rows, evaluation: evalRows }, null, 2));
} else {
  const fmt = (x: number, d = 1) => x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
  console.log(`\ncompression throughput, ${layout.total.toLocaleString()}-parameter layout (L${dims.layers} d${dims.hidden} ffn${dims.ffn} V${dims.vocab}), node ${process.version}\n`);
  console.log('| operation | elements | ms | MB/s (f32 in) | file |');
  console.log('|:--|--:|--:|--:|:--|');
  for (const r of rows) console.log(`| ${r.op} | ${r.elements.toLocaleString()} | ${fmt(r.ms)} | ${fmt(r.mbps, 0)} | ${r.note ?? ''} |`);
  console.log('\nEvaluation throughput (L2 d128 V4000 classifier / MLM, the npm start sweep\'s middle size)\n');
  console.log('| operation | ms | rate |');
  console.log('|:--|--:|--:|');
  for (const r of evalRows) console.log(`| ${r.op} | ${Number.isFinite(r.ms) ? fmt(r.ms) : ''} | ${r.rate} |`);
}
