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

/** One evaluation of the early-stopping split during fine-tuning. */
export interface FinetunePoint {
  step: number;
  accuracy: number;
  loss: number;
}

/** What fine-tuning one pretrained member did (the evaluation step writes finetuned/<member>.json). */
export interface Finetune {
  sizeId: string;
  budgetId: string;
  seed?: number;
  /** the fine-tuning seed (classifier head, batch order) */
  finetuneSeed: number;
  /** budgeted optimizer steps, and those run (fewer when early stopping stopped it) */
  steps: number;
  stepsRun: number;
  /** training FLOPs of the steps run (3 × forward of every batch) */
  trainFlops: number;
  trainLoss: number;
  /** dev accuracy of the kept weights */
  devAccuracy: number;
  /** absent: early stopping off (the final weights are kept) */
  earlyStopping?: {
    evalEvery: number;
    patience: number;
    /** steps done at the evaluation whose weights were kept */
    bestStep: number;
    /** early-stopping-split accuracy of the kept weights */
    bestAccuracy: number;
    stoppedEarly: boolean;
    curve: FinetunePoint[];
    /** the evaluations' cost, beside the training FLOPs: evaluations of the early-stopping split and of dev, examples scored, forward FLOPs (at full sequence length: an upper bound), seconds */
    stopEvaluations: number;
    devEvaluations: number;
    evalExamples: number;
    evalFlops: number;
    evalSeconds: number;
  };
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
  /** the members' fine-tuning (absent in reports of sweeps before early stopping) */
  finetunes?: Finetune[];
}

/** Which bytes a memory budget counts: the whole compressed file, or everything but the embeddings. */
export type BytesView = 'total' | 'nonEmbedding';
export const BYTES_VIEWS: readonly BytesView[] = ['total', 'nonEmbedding'];
