/**
 * Dynamic loss scaling for mixed precision (model.precision = mixed): the loss is multiplied by
 * `scale` before the backward pass, so that small gradients survive the f16 rounding of the matmul
 * operands (f16's smallest subnormal is 6e-8), and the gradients are divided by it again before
 * the clip and the update (folded into the update's gradient factor: no pass over the gradients).
 * A step whose gradient norm is not finite (an operand overflowed f16's 65504) is skipped — no
 * update, the optimizer's step count unchanged — and the scale halves; after `growthInterval`
 * good steps in a row it doubles. Scales are powers of two, so scaling and unscaling are exact.
 *
 * Every replica of a data-parallel run decides alike: the decision is made on the global norm,
 * which every rank computes to the same bits (ml/train/data-parallel.ts).
 *
 * The state is not checkpointed: a resumed run starts again at `initial` and finds its scale
 * within log2(initial / scale) skipped steps (docs/gpu.md, "Mixed precision").
 */

export interface LossScaleOptions {
  /** the first scale (default 2^16, as PyTorch's GradScaler) */
  initial: number;
  /** good steps in a row before the scale doubles (default 2000) */
  growthInterval: number;
  /** bounds of the scale (default 1 and 2^24) */
  min: number;
  max: number;
}

export const DEFAULT_LOSS_SCALE: LossScaleOptions = { initial: 2 ** 16, growthInterval: 2000, min: 1, max: 2 ** 24 };

export class LossScaler {
  readonly opts: LossScaleOptions;
  scale: number;
  /** good steps since the last change of scale */
  goodSteps = 0;
  /** steps skipped so far */
  skipped = 0;
  /** steps seen so far (skipped or not) */
  steps = 0;

  constructor(opts: Partial<LossScaleOptions> = {}) {
    this.opts = { ...DEFAULT_LOSS_SCALE, ...opts };
    for (const k of ['initial', 'min', 'max'] as const) {
      const v = this.opts[k];
      if (!(v > 0) || 2 ** Math.round(Math.log2(v)) !== v) throw new Error(`loss scale ${k}: expected a power of two, got ${v}`);
    }
    if (!(this.opts.min <= this.opts.initial && this.opts.initial <= this.opts.max)) throw new Error(`loss scale: expected min ≤ initial ≤ max, got ${this.opts.min}, ${this.opts.initial}, ${this.opts.max}`);
    if (!(Number.isInteger(this.opts.growthInterval) && this.opts.growthInterval > 0)) throw new Error(`loss scale growthInterval: expected a positive integer, got ${this.opts.growthInterval}`);
    this.scale = this.opts.initial;
  }

  /**
   * Records one step from its gradient norm (scaled or unscaled: only whether it is finite counts);
   * returns true if the step is to be applied, false if it is skipped (the scale has then halved).
   */
  update(gradNorm: number): boolean {
    this.steps++;
    if (!Number.isFinite(gradNorm)) {
      this.skipped++;
      this.goodSteps = 0;
      this.scale = Math.max(this.opts.min, this.scale / 2);
      return false;
    }
    if (++this.goodSteps >= this.opts.growthInterval) {
      this.goodSteps = 0;
      this.scale = Math.min(this.opts.max, this.scale * 2);
    }
    return true;
  }

  /** For logs. */
  state(): { scale: number; goodSteps: number; skipped: number; steps: number } {
    return { scale: this.scale, goodSteps: this.goodSteps, skipped: this.skipped, steps: this.steps };
  }
}
