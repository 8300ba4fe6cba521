/**
 * BLEU after compression, for the translation experiment: a trained encoder–decoder's weights are
 * compressed one-shot with compression/'s own code (quantization, global magnitude pruning, both)
 * exactly as the classification cells are, the real file size is measured (encodeCompressed: the
 * bytes a deployed model takes), and the decompressed weights translate the evaluation pairs
 * (greedy search; corpus BLEU, lowercased) and score their teacher-forced loss. No fine-tuning
 * after pruning (one-shot only), so a cell is a pure post-training compression.
 */
import { cellLabel, checkCellSpec, compressSpecOf, prunes, type CellSpec } from '../grid.ts';
import { compressedSizes, compressedWeights, encodeCompressed } from '../format.ts';
import { globalMagnitudeMask } from '../prune.ts';
import { corpusBleu } from '../../ml/tasks/bleu.ts';
import type { TranslationTask } from '../../ml/tasks/translate.ts';
import { pairBatches } from '../../ml/data/translation.ts';

/** The default cells: f32; 8- and 4-bit per-channel quantization of every matrix (the shared embedding table included); 50% one-shot pruning of the dense weights; 50% pruning + 4 bits of everything. */
export const TRANSLATION_CELLS: CellSpec[] = [
  { method: 'none', embeddings: false },
  { method: 'quant', bits: 8, granularity: 'channel', embeddings: true },
  { method: 'quant', bits: 4, granularity: 'channel', embeddings: true },
  { method: 'prune-oneshot', sparsity: 0.5, embeddings: false },
  { method: 'prune+quant', sparsity: 0.5, bits: 4, granularity: 'channel', embeddings: true },
];

export interface TranslationCellResult {
  cell: CellSpec;
  label: string;
  /** the compressed file's bytes, and the part that is the embedding tables */
  bytes: number;
  embeddingBytes: number;
  /** teacher-forced loss and greedy corpus BLEU on the evaluation pairs */
  loss: number;
  bleu: number;
}

/** Every cell on `weights` (the task's layout); the trainer of the task is created once and reloaded per cell. */
export async function evaluateTranslationCells(task: TranslationTask, weights: Float32Array, cells: readonly CellSpec[] = TRANSLATION_CELLS, onCell?: (r: TranslationCellResult) => void): Promise<TranslationCellResult[]> {
  const layout = task.layout;
  const trainer = task.createTrainer(weights);
  const refs = [task.data.evalPairs.map((p) => p.fr)];
  const evalBatches = pairBatches(task.data.evalSet, 32); // the same for every cell
  const out: TranslationCellResult[] = [];
  try {
    for (const cell of cells) {
      checkCellSpec(cell);
      if (cell.method === 'prune-iterative') throw new RangeError('translation cells are one-shot: prune-iterative needs fine-tuning rounds, not built for translation');
      const mask = prunes(cell.method) ? globalMagnitudeMask(weights, layout, cell.sparsity!, { embeddings: cell.embeddings }) : undefined;
      const spec = compressSpecOf(cell, mask);
      const file = encodeCompressed(weights, layout, spec);
      const sizes = compressedSizes(file, layout);
      trainer.setWeights(compressedWeights(weights, layout, spec));
      const loss = await trainer.evaluate(evalBatches);
      const hyp = await task.translations(trainer, 1);
      const r = { cell, label: cellLabel(cell), bytes: sizes.totalBytes, embeddingBytes: sizes.embeddingBytes, loss, bleu: corpusBleu(hyp, refs, { lowercase: true }).score };
      out.push(r);
      onCell?.(r);
    }
  } finally {
    trainer.dispose();
  }
  return out;
}
