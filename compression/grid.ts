/**
 * The compression grid: the methods (quantization, one-shot and iterative magnitude pruning, both
 * combined), what one cell of the grid is (method + level), its label, its checks, and the grid a
 * sweep's `evaluation.compression` section expands to. Plain data and arithmetic: validating a sweep
 * config needs this, not the model code (compression/eval measures the cells).
 */
import { codedError } from '../core/errors.ts';
import type { CompressSpec } from './format.ts';

/** The compression methods of the grid, in the report's order. */
export const METHODS = ['none', 'quant', 'prune-oneshot', 'prune-iterative', 'prune+quant'] as const;
export type Method = (typeof METHODS)[number];
export type Granularity = 'channel' | 'tensor';

export interface CellSpec {
  method: Method;
  /** quant, prune+quant: bits per weight, 2…8 */
  bits?: number;
  /** quant, prune+quant: one scale per output channel or per tensor */
  granularity?: Granularity;
  /** compress the embedding tables too (quantize them; let them take part in pruning and store them sparse) */
  embeddings: boolean;
  /** prune-*: final fraction of the participating weights set to 0, in [0, 1) */
  sparsity?: number;
  /** prune-iterative: rounds of (prune → fine-tune) on the cubic schedule */
  rounds?: number;
  /** prune-iterative: fine-tuning steps per round (mask held) */
  stepsPerRound?: number;
}

export interface GridOptions {
  bits: number[];
  granularities: Granularity[];
  embeddings: boolean[];
  sparsities: number[];
  iterative: { rounds: number; stepsPerRound: number } | null;
  /** prune+quant cells; granularity defaults to 'channel' */
  combined: Array<{ sparsity: number; bits: number; granularity?: Granularity }>;
}

export const CellSpecError = codedError('CellSpecError', 'TTC_ERR_CELL_SPEC');
export type CellSpecError = InstanceType<typeof CellSpecError>;

export const quantizes = (m: Method) => m === 'quant' || m === 'prune+quant';
export const prunes = (m: Method) => m === 'prune-oneshot' || m === 'prune-iterative' || m === 'prune+quant';

/** Throws a CellSpecError naming the field when the spec is incomplete or out of range. */
export function checkCellSpec(spec: CellSpec): void {
  const bad = (why: string): never => {
    throw new CellSpecError(`cell ${JSON.stringify(spec)}: ${why}`);
  };
  if (!(METHODS as readonly string[]).includes(spec.method)) bad(`method must be one of ${METHODS.join(', ')}`);
  if (typeof spec.embeddings !== 'boolean') bad('embeddings must be a boolean');
  if (quantizes(spec.method)) {
    if (!Number.isInteger(spec.bits) || spec.bits! < 2 || spec.bits! > 8) bad('bits must be an integer in [2, 8]');
    if (spec.granularity !== 'channel' && spec.granularity !== 'tensor') bad("granularity must be 'channel' or 'tensor'");
  }
  if (prunes(spec.method)) {
    if (typeof spec.sparsity !== 'number' || !(spec.sparsity >= 0 && spec.sparsity < 1)) bad('sparsity must be a number in [0, 1)');
  }
  if (spec.method === 'prune-iterative') {
    if (!Number.isInteger(spec.rounds) || spec.rounds! < 1) bad('rounds must be a positive integer');
    if (!Number.isInteger(spec.stepsPerRound) || spec.stepsPerRound! < 1) bad('stepsPerRound must be a positive integer');
  }
}

/** Human label of a cell's level: "f32", "8-bit/channel", "sparsity 0.9", "sparsity 0.5 + 4-bit/channel"; " +emb" when the embeddings are compressed. */
export function cellLabel(spec: CellSpec): string {
  const q = `${spec.bits}-bit/${spec.granularity}`;
  const s = `sparsity ${spec.sparsity}`;
  const base = spec.method === 'none' ? 'f32' : spec.method === 'quant' ? q : spec.method === 'prune+quant' ? `${s} + ${q}` : s;
  return spec.method !== 'none' && spec.embeddings ? `${base} +emb` : base;
}

/**
 * Every cell of a grid, in a fixed order: 'none'; quant (bits × granularities × embeddings);
 * prune-oneshot (sparsities × embeddings); prune-iterative (same, when `iterative` is set);
 * prune+quant (combined × embeddings). Duplicates are dropped; every cell is checked.
 */
export function compressionGrid(opts: GridOptions): CellSpec[] {
  const out: CellSpec[] = [{ method: 'none', embeddings: false }];
  for (const bits of opts.bits) for (const granularity of opts.granularities) for (const embeddings of opts.embeddings) out.push({ method: 'quant', bits, granularity, embeddings });
  for (const sparsity of opts.sparsities) for (const embeddings of opts.embeddings) out.push({ method: 'prune-oneshot', sparsity, embeddings });
  if (opts.iterative) {
    const { rounds, stepsPerRound } = opts.iterative;
    for (const sparsity of opts.sparsities) for (const embeddings of opts.embeddings) out.push({ method: 'prune-iterative', sparsity, embeddings, rounds, stepsPerRound });
  }
  for (const c of opts.combined) {
    for (const embeddings of opts.embeddings) out.push({ method: 'prune+quant', sparsity: c.sparsity, bits: c.bits, granularity: c.granularity ?? 'channel', embeddings });
  }
  const seen = new Set<string>();
  return out.filter((spec) => {
    checkCellSpec(spec);
    const key = `${spec.method}|${cellLabel(spec)}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** The file encoding of a cell (mask given for pruning methods). */
export function compressSpecOf(spec: CellSpec, mask?: Uint8Array, metadata?: Record<string, string>): CompressSpec {
  return {
    quant: quantizes(spec.method) ? { bits: spec.bits!, granularity: spec.granularity!, embeddings: spec.embeddings } : undefined,
    mask: prunes(spec.method) ? mask : undefined,
    pruneEmbeddings: prunes(spec.method) && spec.embeddings,
    metadata,
  };
}
