/**
 * The data a report is written from: everything a sweep measured, as plain JSON-able data.
 * The sweep fills it; `writeReport` (write.ts) turns it into results.csv, report.md, report.html
 * and SVG plots; `conclude` (conclusion.ts) reads the answer off it.
 */
import type { Method } from '../compression/grid.ts';

export type BudgetKind = 'flops' | 'seconds';

export interface Budget {
  id: string;
  kind: BudgetKind;
  /** training FLOPs (kind 'flops') or training seconds (kind 'seconds') */
  value: number;
}

export interface Size {
  id: string;
  layers: number;
  hidden: number;
  heads: number;
  ffn: number;
  parameters: number;
  nonEmbeddingParameters: number;
}

export interface CurvePoint {
  step: number;
  flops: number;
  seconds: number;
  valLoss: number;
}

export interface Curve {
  sizeId: string;
  budgetId: string;
  /** set when `seeds: n` repeats pretraining; curves of one (size, budget) are then averaged */
  seed?: number;
  points: CurvePoint[];
}

export interface Final {
  sizeId: string;
  budgetId: string;
  seed?: number;
  steps: number;
  flops: number;
  seconds: number;
  valLoss: number;
}


export interface Cell {
  sizeId: string;
  budgetId: string;
  method: Method;
  /** human label, e.g. "8-bit/channel", "sparsity 0.9", "0.5 + 4-bit" */
  level: string;
  bits?: number;
  granularity?: 'channel' | 'tensor';
  sparsity?: number;
  embeddingsCompressed: boolean;
  /** real bytes of the compressed file */
  bytesTotal: number;
  bytesNonEmbedding: number;
  devAccuracy: number;
  testAccuracy: number;
  valPerplexity?: number;
  /** when `seeds: n` repeats everything */
  seed?: number;
}

export interface ReportData {
  runId: string;
  /** ISO time */
  createdAt: string;
  budgets: Budget[];
  sizes: Size[];
  /** pretraining curves, one per (size, budget) (per seed when seeds repeat) */
  curves: Curve[];
  /** final pretraining result per (size, budget) (per seed when seeds repeat) */
  finals: Final[];
  /** one row per (size, budget, method, level[, seed]) compression cell, after fine-tuning */
  cells: Cell[];
}

/** Which bytes a memory budget counts: the whole compressed file, or everything but the embeddings. */
export type BytesView = 'total' | 'nonEmbedding';
export const BYTES_VIEWS: readonly BytesView[] = ['total', 'nonEmbedding'];
