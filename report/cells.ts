/** The report's row of one evaluated compression cell. */
import type { CellResult } from '../compression/eval/cells.ts';
import { prunes, quantizes } from '../compression/grid.ts';
import type { Cell } from './types.ts';

/** A compression cell's result (compression/eval) as a report row. `sparsity` is the cell's target. */
export function toReportCell(r: CellResult, ids: { sizeId: string; budgetId: string; seed?: number }): Cell {
  const cell: Cell = {
    sizeId: ids.sizeId,
    budgetId: ids.budgetId,
    method: r.spec.method,
    level: r.level,
    embeddingsCompressed: r.spec.method !== 'none' && r.spec.embeddings,
    bytesTotal: r.bytesTotal,
    bytesNonEmbedding: r.bytesNonEmbedding,
    devAccuracy: r.devAccuracy,
    testAccuracy: r.testAccuracy,
    valPerplexity: r.valPerplexity,
  };
  if (r.spec.bits !== undefined && quantizes(r.spec.method)) cell.bits = r.spec.bits;
  if (r.spec.granularity !== undefined && quantizes(r.spec.method)) cell.granularity = r.spec.granularity;
  if (r.spec.sparsity !== undefined && prunes(r.spec.method)) cell.sparsity = r.spec.sparsity;
  if (ids.seed !== undefined) cell.seed = ids.seed;
  return cell;
}
