/**
 * SYNTHETIC report data for tests and for previewing the report: every number here is made up
 * from simple formulas (a Chinchilla-style loss law, accuracy falling with loss, compression
 * hurting small models more). Nothing here is a measurement.
 *
 *   node --import tsx report/synthetic.ts <out-dir> [seeds]   writes a preview report
 */
import { type Budget, type Cell, type Curve, type Final, type ReportData, type Size } from './types.ts';

export interface SyntheticOptions {
  /** repeat every pretraining curve, final and cell this many times with jitter (default 1: no seed field) */
  seeds?: number;
  /** FLOP budgets (default 1e13 and 1e16: the smallest size wins the first, the largest the second) */
  budgets?: number[];
}

const VOCAB = 8192;
const SEQ = 128;
const BATCH_TOKENS = 32 * SEQ;

function size(id: string, layers: number, hidden: number): Size {
  const ffn = 4 * hidden;
  const embeddings = (VOCAB + SEQ + 2) * hidden + 2 * hidden;
  const layer = 4 * (hidden * hidden + hidden) + 2 * hidden * ffn + ffn + hidden + 4 * hidden;
  const head = hidden * hidden + hidden + 2 * hidden + VOCAB;
  const nonEmbeddingParameters = layers * layer + head;
  return { id, layers, hidden, heads: hidden / 64, ffn, parameters: embeddings + nonEmbeddingParameters, nonEmbeddingParameters };
}

/** loss(N, D) = E + A / N^α + B / D^β, N = non-embedding parameters, D = training tokens */
function lossLaw(n: number, tokens: number): number {
  return 1.9 + 60 / n ** 0.3 + 150 / Math.max(tokens, 1) ** 0.3;
}

/** deterministic jitter in [-1, 1] from a string */
function jitter(key: string): number {
  let h = 2166136261;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
  return (((h >>> 0) % 2001) - 1000) / 1000;
}

export function syntheticReportData(options: SyntheticOptions = {}): ReportData {
  const seeds = options.seeds ?? 1;
  const seedList: Array<number | undefined> = seeds > 1 ? Array.from({ length: seeds }, (_, i) => i + 1) : [undefined];
  const budgets: Budget[] = (options.budgets ?? [1e13, 1e16]).map((value, i) => ({ id: `B${i + 1}`, kind: 'flops', value }));
  const sizes = [size('tiny', 2, 128), size('small', 4, 256), size('base', 6, 512)];
  const curves: Curve[] = [];
  const finals: Final[] = [];
  const cells: Cell[] = [];
  for (const b of budgets) {
    for (const s of sizes) {
      const flopsPerStep = 6 * s.parameters * BATCH_TOKENS;
      const steps = Math.floor(b.value / flopsPerStep);
      const flopsPerSecond = 2e10 * (s.parameters / 1e6) ** 0.3;
      for (const seed of seedList) {
        const noise = (k: string, scale: number): number => (seed === undefined ? 0 : scale * jitter(`${b.id}/${s.id}/${seed}/${k}`));
        const points = [];
        const every = Math.max(1, Math.floor(steps / 20));
        for (let step = every; step <= steps; step += every) {
          const flops = step * flopsPerStep;
          points.push({ step, flops, seconds: flops / flopsPerSecond, valLoss: lossLaw(s.nonEmbeddingParameters, step * BATCH_TOKENS) + noise(`c${step}`, 0.01) });
        }
        if (points.length === 0 || points[points.length - 1]!.step !== steps) {
          const flops = steps * flopsPerStep;
          points.push({ step: steps, flops, seconds: flops / flopsPerSecond, valLoss: lossLaw(s.nonEmbeddingParameters, steps * BATCH_TOKENS) + noise('c-last', 0.01) });
        }
        curves.push({ sizeId: s.id, budgetId: b.id, ...(seed !== undefined ? { seed } : {}), points });
        const last = points[points.length - 1]!;
        finals.push({ sizeId: s.id, budgetId: b.id, ...(seed !== undefined ? { seed } : {}), steps, flops: last.flops, seconds: last.seconds, valLoss: last.valLoss });

        // fine-tuned accuracy falls with the pretraining loss; compression hurts small models more
        const base = Math.min(0.95, Math.max(0.2, 0.95 - 0.12 * (last.valLoss - 2.2)));
        const fragility = (1e6 / s.nonEmbeddingParameters) ** 0.35;
        const embeddingBytes = (s.parameters - s.nonEmbeddingParameters) * 4;
        const add = (c: Omit<Cell, 'sizeId' | 'budgetId' | 'devAccuracy' | 'testAccuracy' | 'seed'>, drop: number): void => {
          const dev = Math.max(0.1, base - drop + noise(`${c.method}/${c.level}/dev`, 0.004));
          const test = Math.max(0.1, dev - 0.004 + noise(`${c.method}/${c.level}/test`, 0.004));
          cells.push({ sizeId: s.id, budgetId: b.id, ...c, devAccuracy: dev, testAccuracy: test, ...(seed !== undefined ? { seed } : {}) });
        };
        const nonEmb = s.nonEmbeddingParameters;
        add({ method: 'none', level: 'fp32', bits: 32, embeddingsCompressed: false, bytesTotal: s.parameters * 4 + 512, bytesNonEmbedding: nonEmb * 4 }, 0);
        for (const bits of [8, 6, 4, 3, 2]) {
          for (const granularity of ['channel', 'tensor'] as const) {
            const scales = granularity === 'channel' ? (s.layers * 6 + 2) * s.hidden * 4 : (s.layers * 6 + 2) * 4;
            const nonEmbBytes = Math.ceil((nonEmb * bits) / 8) + scales;
            const embBytes = Math.ceil(((s.parameters - nonEmb) * bits) / 8) + (granularity === 'channel' ? (VOCAB + SEQ) * 4 : 8);
            const drop = fragility * 0.5 * 2 ** -bits * 16 * (granularity === 'tensor' ? 1.6 : 1);
            add({ method: 'quant', level: `${bits}-bit/${granularity}`, bits, granularity, embeddingsCompressed: true, bytesTotal: nonEmbBytes + embBytes + 512, bytesNonEmbedding: nonEmbBytes }, drop);
          }
        }
        for (const method of ['prune-oneshot', 'prune-iterative'] as const) {
          for (const sparsity of [0.3, 0.5, 0.7, 0.9]) {
            const nonEmbBytes = Math.ceil(nonEmb * (1 - sparsity)) * 4 + Math.ceil(nonEmb / 8);
            const drop = fragility * 0.3 * sparsity ** 3 * (method === 'prune-oneshot' ? 1.8 : 1);
            add({ method, level: `sparsity ${sparsity}`, sparsity, embeddingsCompressed: false, bytesTotal: embeddingBytes + nonEmbBytes + 512, bytesNonEmbedding: nonEmbBytes }, drop);
          }
        }
        for (const sparsity of [0.5, 0.9]) {
          for (const bits of [8, 4]) {
            const nonEmbBytes = Math.ceil((nonEmb * (1 - sparsity) * bits) / 8) + Math.ceil(nonEmb / 8) + (s.layers * 6 + 2) * s.hidden * 4;
            const embBytes = Math.ceil(((s.parameters - nonEmb) * bits) / 8) + (VOCAB + SEQ) * 4;
            const drop = fragility * (0.3 * sparsity ** 3 + 0.5 * 2 ** -bits * 16);
            add(
              { method: 'prune+quant', level: `${sparsity} + ${bits}-bit`, bits, granularity: 'channel', sparsity, embeddingsCompressed: true, bytesTotal: nonEmbBytes + embBytes + 512, bytesNonEmbedding: nonEmbBytes },
              drop,
            );
          }
        }
      }
    }
  }
  return { runId: 'synthetic', createdAt: new Date(0).toISOString(), budgets, sizes, curves, finals, cells };
}

// ---------------------------------------------------------------------------------------------
// SYNTHETIC data with a known answer (tests of the fits, the repeats rule and robustness)

export interface KnownOptions {
  /** budget values (default 1e15, 1e16, 1e17, 1e18) */
  budgets?: number[];
  /** 'flops' (default) or 'seconds': the same law, read with C = the budget value */
  kind?: 'flops' | 'seconds';
  /** parameter counts of the sizes (default 4M, 8M, 16M, 32M, 64M) */
  params?: number[];
  /** repeats per (size, budget) (default 1: no seed field) */
  seeds?: number;
  /** sd of the seeded noise added to each final loss (default 0) */
  lossNoise?: number;
  /** how fragile under compression each size is, largest first … (default 'larger-robust') */
  robustness?: 'larger-robust' | 'smaller-robust' | 'equal';
  /** half-width of the seeded jitter on every dev accuracy (default 0.002) */
  accNoise?: number;
  /** extra loss on (sizeId, budgetId) pairs, e.g. an outlier */
  bump?: Array<{ sizeId: string; budgetId: string; loss: number }>;
}

/** N_opt(C) = KNOWN_K · C^KNOWN_EXP: the compute-optimal size the known data are built around. */
export const KNOWN_K = 2e-2;
export const KNOWN_EXP = 0.5;
export const knownNOpt = (c: number): number => KNOWN_K * c ** KNOWN_EXP;
/** loss(N, C) = 0.06·(ln N − ln N_opt(C))² + 2 + 50 / ln C: each budget's IsoFLOP curve is an exact parabola in ln N */
export const knownLoss = (n: number, c: number): number => 0.06 * (Math.log(n) - Math.log(knownNOpt(c))) ** 2 + 2 + 50 / Math.log(c);

/**
 * A sweep whose answer is known: final losses on knownLoss (IsoFLOP optimum knownNOpt(C) at every
 * budget, N_opt ∝ C^0.5), and compression cells whose accuracy drop per size is set by
 * `robustness` (larger sizes drop less, more, or the same), every number jittered per seed.
 */
export function syntheticKnown(options: KnownOptions = {}): ReportData {
  const kind = options.kind ?? 'flops';
  const values = options.budgets ?? [1e15, 1e16, 1e17, 1e18];
  const params = options.params ?? [4e6, 8e6, 16e6, 32e6, 64e6];
  const seeds = options.seeds ?? 1;
  const seedList: Array<number | undefined> = seeds > 1 ? Array.from({ length: seeds }, (_, i) => i + 1) : [undefined];
  const lossNoise = options.lossNoise ?? 0;
  const accNoise = options.accNoise ?? 0.002;
  const budgets: Budget[] = values.map((value, i) => ({ id: `B${i + 1}`, kind, value }));
  const sizes: Size[] = params.map((p, i) => ({ id: `s${i}`, layers: 2 + 2 * i, hidden: 128, heads: 2, ffn: 512, parameters: p, nonEmbeddingParameters: Math.round(p / 2) }));
  const finals: Final[] = [];
  const cells: Cell[] = [];
  const fragility = (i: number): number => {
    const t = sizes.length > 1 ? i / (sizes.length - 1) : 0;
    return options.robustness === 'smaller-robust' ? 0.5 + t : options.robustness === 'equal' ? 1 : 1.5 - t;
  };
  for (const b of budgets) {
    sizes.forEach((s, i) => {
      for (const seed of seedList) {
        const j = (k: string): number => jitter(`${b.id}/${s.id}/${seed ?? 0}/${k}`);
        const bump = options.bump?.find((x) => x.sizeId === s.id && x.budgetId === b.id)?.loss ?? 0;
        const valLoss = knownLoss(s.parameters, b.value) + bump + lossNoise * j('loss');
        const sd = seed !== undefined ? { seed } : {};
        finals.push({ sizeId: s.id, budgetId: b.id, ...sd, steps: 100, flops: kind === 'flops' ? b.value : 0, seconds: kind === 'seconds' ? b.value : 1, valLoss });
        const base = 0.85 - 0.05 * (valLoss - 2.5);
        const acc = (drop: number, k: string): number => Math.min(0.99, Math.max(0.01, base - drop + accNoise * j(k)));
        const cell = (c: Omit<Cell, 'sizeId' | 'budgetId' | 'devAccuracy' | 'testAccuracy' | 'embeddingsCompressed'>, drop: number): void => {
          const dev = acc(drop, `${c.level}/dev`);
          cells.push({ sizeId: s.id, budgetId: b.id, ...c, embeddingsCompressed: false, devAccuracy: dev, testAccuracy: acc(drop, `${c.level}/test`), ...sd });
        };
        cell({ method: 'none', level: 'fp32', bits: 32, bytesTotal: s.parameters * 4, bytesNonEmbedding: s.nonEmbeddingParameters * 4 }, 0);
        for (const bits of [8, 4, 2]) {
          cell({ method: 'quant', level: `${bits}-bit/channel`, bits, granularity: 'channel', bytesTotal: Math.ceil((s.parameters * bits) / 8), bytesNonEmbedding: Math.ceil((s.nonEmbeddingParameters * bits) / 8) }, fragility(i) * 0.02 * 2 ** (8 - bits) / 4);
        }
        for (const sparsity of [0.5, 0.9]) {
          cell({ method: 'prune-iterative', level: `sparsity ${sparsity}`, sparsity, bytesTotal: Math.ceil(s.parameters * (1 - sparsity) * 4.5), bytesNonEmbedding: Math.ceil(s.nonEmbeddingParameters * (1 - sparsity) * 4.5) }, fragility(i) * 0.15 * sparsity ** 3);
        }
      }
    });
  }
  return { runId: 'known', createdAt: new Date(0).toISOString(), budgets, sizes, curves: [], finals, cells };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { writeReport } = await import('./write.ts');
  const dir = process.argv[2] ?? 'report-preview';
  const seeds = Number(process.argv[3] ?? '1');
  const { files, conclusion } = writeReport(dir, syntheticReportData({ seeds }));
  console.log(conclusion.join('\n'));
  console.log(`\nwrote ${files.length} files under ${dir}`);
}
