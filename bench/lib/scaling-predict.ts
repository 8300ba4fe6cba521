/**
 * From the α–β fit measured by bench/cluster.ts to step time and scaling efficiency at cluster
 * scale (8–1,024 workers, 10/25/100 Gbit/s, BERT-base-sized gradients): the table and plot data
 * of docs/scaling.md. Pure; the assumptions are fields of `PredictionBasis` and printed with it.
 */
import { ring2dSeconds, ringSeconds, scalingEfficiency, stepSeconds, type AlphaBetaFit, type StepModel, type StepVariant } from './alpha-beta.ts';

/** The step model's workload (compute, parameters, update, buckets) and where its network terms come from. */
export interface PredictionBasis extends Omit<StepModel, 'net' | 'collective'> {
  /** α from the link-bound (1 Gbit/s) fit, seconds per ring step */
  alpha: number;
  /** γ from the same fit, seconds per byte */
  gamma: number;
  /** β·B at the measured rate: how many bytes' time the ring spends per byte a link could carry (≥ 1) */
  linkOverhead: number;
  /** what one ring channel moves per link when the link is not the limit (its CPU path), bytes/s; Infinity = no ceiling */
  ceilingBytesPerSecond: number;
  /** where α, β·B and the ceiling come from, one line */
  source: string;
}

export const PREDICT_WORKERS = [8, 16, 32, 64, 128, 256, 512, 1024];
export const PREDICT_GBITS = [10, 25, 100];

/** the step variants, plus ZeRO-1 + overlap on a 2-D ring with 1 and with 4 channels (parallel rings) */
export type PredictedVariant = StepVariant | 'sharded-overlap-2d' | 'sharded-overlap-2d-4ch';

export interface PredictionRow {
  gbit: number;
  N: number;
  /** one all-reduce of the gradients: flat ring and 2-D ring (1 channel), seconds */
  allReduce: number;
  allReduce2d: number;
  step: Record<PredictedVariant, number>;
  efficiency: Record<PredictedVariant, number>;
}

/** β at `gbit`: the link's (with the measured overhead) or the channels' software ceiling, whichever is slower */
export function stepModelAt(b: PredictionBasis, gbit: number, topology: 'flat' | '2d' = 'flat', channels = 1): StepModel {
  const beta = Math.max(b.linkOverhead / ((gbit * 1e9) / 8), 1 / (channels * b.ceilingBytesPerSecond));
  const net: Pick<AlphaBetaFit, 'alpha' | 'beta' | 'gamma'> = { alpha: b.alpha, beta, gamma: b.gamma };
  return {
    ...b, net, // the basis's own network fields ride along unused
    ...(topology === '2d' ? { collective: (N: number, bytes: number) => ring2dSeconds(net, N, bytes) } : {}),
  };
}

export function predict(b: PredictionBasis, workers = PREDICT_WORKERS, gbits = PREDICT_GBITS): PredictionRow[] {
  const rows: PredictionRow[] = [];
  for (const gbit of gbits) {
    const flat = stepModelAt(b, gbit), twoD = stepModelAt(b, gbit, '2d'), twoD4 = stepModelAt(b, gbit, '2d', 4);
    const variants: StepVariant[] = ['allreduce', 'allreduce-overlap', 'sharded', 'sharded-overlap'];
    for (const N of workers) {
      const step = Object.fromEntries(variants.map((v) => [v, stepSeconds(flat, v, N)])) as PredictionRow['step'];
      step['sharded-overlap-2d'] = stepSeconds(twoD, 'sharded-overlap', N);
      step['sharded-overlap-2d-4ch'] = stepSeconds(twoD4, 'sharded-overlap', N);
      const efficiency = Object.fromEntries(variants.map((v) => [v, scalingEfficiency(flat, v, N)])) as PredictionRow['efficiency'];
      efficiency['sharded-overlap-2d'] = scalingEfficiency(twoD, 'sharded-overlap', N);
      efficiency['sharded-overlap-2d-4ch'] = scalingEfficiency(twoD4, 'sharded-overlap', N);
      const bytes = b.params * b.bytesPerParam;
      rows.push({ gbit, N, allReduce: ringSeconds(flat.net, N, bytes), allReduce2d: ring2dSeconds(flat.net, N, bytes), step, efficiency });
    }
  }
  return rows;
}
