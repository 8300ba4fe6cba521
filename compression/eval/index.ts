/** Evaluation of compression cells: context, fine-tuning, the grid and one cell (docs/evaluation.md). */
export * from './context.ts';
export * from './finetune.ts';
export * from './cells.ts';
