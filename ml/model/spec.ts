/**
 * The parameter layout of the encoder: names (Hugging Face BERT naming, so export is a
 * rename-free copy), shapes, and offsets into one flat Float32Array. The flat layout is what
 * the optimizer, the all-reduce, checkpoints and parameter hashes work on.
 *
 * Dense weights are stored [in, out] (x · W); export transposes them to PyTorch's [out, in].
 */
export interface ModelDims {
  layers: number;
  hidden: number;
  heads: number;
  ffn: number;
  seqLen: number;
  vocab: number;
}

export type ParamKind = 'embedding' | 'dense' | 'bias' | 'norm';

export interface ParamSpec {
  name: string;
  shape: number[];
  kind: ParamKind;
  offset: number;
  size: number;
}

export interface ParamLayout {
  specs: ParamSpec[];
  byName: Map<string, ParamSpec>;
  total: number;
}

type Entry = [name: string, shape: number[], kind: ParamKind];

function denseEntries(prefix: string, inDim: number, outDim: number): Entry[] {
  return [
    [`${prefix}.weight`, [inDim, outDim], 'dense'],
    [`${prefix}.bias`, [outDim], 'bias'],
  ];
}

function normEntries(prefix: string, dim: number): Entry[] {
  return [
    [`${prefix}.weight`, [dim], 'norm'],
    [`${prefix}.bias`, [dim], 'norm'],
  ];
}

function encoderEntries(d: ModelDims): Entry[] {
  const e: Entry[] = [
    ['embeddings.word_embeddings.weight', [d.vocab, d.hidden], 'embedding'],
    ['embeddings.position_embeddings.weight', [d.seqLen, d.hidden], 'embedding'],
    ...normEntries('embeddings.LayerNorm', d.hidden),
  ];
  for (let i = 0; i < d.layers; i++) {
    const p = `encoder.layer.${i}`;
    e.push(
      ...denseEntries(`${p}.attention.self.query`, d.hidden, d.hidden),
      ...denseEntries(`${p}.attention.self.key`, d.hidden, d.hidden),
      ...denseEntries(`${p}.attention.self.value`, d.hidden, d.hidden),
      ...denseEntries(`${p}.attention.output.dense`, d.hidden, d.hidden),
      ...normEntries(`${p}.attention.output.LayerNorm`, d.hidden),
      ...denseEntries(`${p}.intermediate.dense`, d.hidden, d.ffn),
      ...denseEntries(`${p}.output.dense`, d.ffn, d.hidden),
      ...normEntries(`${p}.output.LayerNorm`, d.hidden),
    );
  }
  return e;
}

/** MLM head: transform (dense + GELU + LayerNorm) and the output bias; the decoder weight is tied to the word embeddings. */
function mlmHeadEntries(d: ModelDims): Entry[] {
  return [
    ...denseEntries('cls.predictions.transform.dense', d.hidden, d.hidden),
    ...normEntries('cls.predictions.transform.LayerNorm', d.hidden),
    ['cls.predictions.bias', [d.vocab], 'bias'],
  ];
}

/** Sequence-classification head (RoBERTa style): first token → dense → tanh → dense. */
function classifierEntries(d: ModelDims, numClasses: number): Entry[] {
  return [...denseEntries('classifier.dense', d.hidden, d.hidden), ...denseEntries('classifier.out_proj', d.hidden, numClasses)];
}

function layoutOf(entries: Entry[]): ParamLayout {
  const specs: ParamSpec[] = [];
  let offset = 0;
  for (const [name, shape, kind] of entries) {
    const size = shape.reduce((a, b) => a * b, 1);
    specs.push({ name, shape, kind, offset, size });
    offset += size;
  }
  return { specs, byName: new Map(specs.map((s) => [s.name, s])), total: offset };
}

/**
 * Decoder of the translation model (ml/model/seq2seq.ts), post-LN like the encoder, named as Hugging
 * Face's BERT-as-decoder (`crossattention`): per layer causal self-attention, cross-attention over
 * the encoder output and the FFN; its own learned positions; the output projection is tied to the
 * shared word embeddings, plus a bias `decoder.lm_head.bias`.
 */
function decoderEntries(d: ModelDims, decoderLayers: number): Entry[] {
  const e: Entry[] = [
    ['decoder.embeddings.position_embeddings.weight', [d.seqLen, d.hidden], 'embedding'],
    ...normEntries('decoder.embeddings.LayerNorm', d.hidden),
  ];
  for (let i = 0; i < decoderLayers; i++) {
    const p = `decoder.layer.${i}`;
    for (const att of ['attention', 'crossattention']) {
      e.push(
        ...denseEntries(`${p}.${att}.self.query`, d.hidden, d.hidden),
        ...denseEntries(`${p}.${att}.self.key`, d.hidden, d.hidden),
        ...denseEntries(`${p}.${att}.self.value`, d.hidden, d.hidden),
        ...denseEntries(`${p}.${att}.output.dense`, d.hidden, d.hidden),
        ...normEntries(`${p}.${att}.output.LayerNorm`, d.hidden),
      );
    }
    e.push(
      ...denseEntries(`${p}.intermediate.dense`, d.hidden, d.ffn),
      ...denseEntries(`${p}.output.dense`, d.ffn, d.hidden),
      ...normEntries(`${p}.output.LayerNorm`, d.hidden),
    );
  }
  e.push(['decoder.lm_head.bias', [d.vocab], 'bias']);
  return e;
}

export type HeadKind = { kind: 'mlm' } | { kind: 'classifier'; numClasses: number } | { kind: 'seq2seq'; decoderLayers: number };

export function paramLayout(d: ModelDims, head: HeadKind = { kind: 'mlm' }): ParamLayout {
  const headEntries = head.kind === 'mlm' ? mlmHeadEntries(d) : head.kind === 'classifier' ? classifierEntries(d, head.numClasses) : decoderEntries(d, head.decoderLayers);
  return layoutOf([...encoderEntries(d), ...headEntries]);
}

/** Parameters of the MLM model (tied decoder counted once). */
export function parameterCount(d: ModelDims, head: HeadKind = { kind: 'mlm' }): number {
  return paramLayout(d, head).total;
}

/** Parameters outside the embedding tables (the part compression acts on at small scale). */
export function nonEmbeddingParameterCount(d: ModelDims, head: HeadKind = { kind: 'mlm' }): number {
  return paramLayout(d, head).specs.filter((s) => s.kind !== 'embedding').reduce((a, s) => a + s.size, 0);
}
