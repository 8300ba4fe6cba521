/**
 * Holds a model's parameters as tfjs tensors built from one flat Float32Array (see spec.ts),
 * and creates the initial weights deterministically from a seed.
 */
import { tf } from '../tf.ts';
import { Rng } from '../../core/rng.ts';
import type { Params } from './transformer.ts';
import type { ParamLayout } from './spec.ts';
import { webgpuAccess } from '../webgpu-access.ts';

/** BERT initialisation: N(0, std) for dense and embedding matrices, 0 for biases, LayerNorm γ=1 β=0. */
export function initialWeights(layout: ParamLayout, seed: number, std: number): Float32Array {
  const flat = new Float32Array(layout.total);
  const rng = new Rng(seed);
  for (const s of layout.specs) {
    if (s.kind === 'dense' || s.kind === 'embedding') {
      for (let i = 0; i < s.size; i++) flat[s.offset + i] = rng.normal() * std;
    } else if (s.kind === 'norm' && s.name.endsWith('.weight')) {
      flat.fill(1, s.offset, s.offset + s.size);
    }
  }
  return flat;
}

export class WeightTensors {
  tensors: Params = {};

  /**
   * @param viewsOf if true, load() gives tfjs views of `flat` instead of copies (see load()); only
   *   for an owner that reloads after every change of `flat`, as Trainer does
   */
  constructor(readonly layout: ParamLayout, flat?: Float32Array, private readonly viewsOf = false) {
    if (flat) this.load(flat);
  }

  /**
   * Replaces every tensor with the flat weights. Copies by default, since tfjs may keep the array it
   * is given (the cpu backend computes on it; webgpu keeps it until its first upload). With viewsOf
   * the tensors are views of `flat`: no 368 MB copy per step at BERT-base size, correct as long as
   * `flat` changes only right before the next load(), which replaces these tensors.
   */
  load(flat: Float32Array): void {
    if (flat.length !== this.layout.total) throw new Error(`weights: expected ${this.layout.total} floats, got ${flat.length}`);
    const next: Params = {};
    for (const s of this.layout.specs) {
      const values = this.viewsOf ? flat.subarray(s.offset, s.offset + s.size) : flat.slice(s.offset, s.offset + s.size);
      next[s.name] = tf.tensor(values, s.shape, 'float32');
    }
    this.dispose();
    this.tensors = next;
  }

  /**
   * Like load(), but on webgpu each new tensor's buffer (from tfjs's pool: the old tensors' own,
   * disposed first) is filled by queue.writeBuffer, not by tfjs's upload, which creates a mapped
   * staging buffer per tensor at its first use. `flat` may change right after (it is copied now).
   */
  write(flat: Float32Array): void {
    const gpu = webgpuAccess();
    if (!gpu) return this.load(flat);
    if (flat.length !== this.layout.total) throw new Error(`weights: expected ${this.layout.total} floats, got ${flat.length}`);
    this.dispose();
    for (const s of this.layout.specs) this.tensors[s.name] = gpu.tensorFrom(flat.subarray(s.offset, s.offset + s.size), s.shape);
  }

  /** Takes `list` (layout order) as the tensors, disposing the current ones. */
  adopt(list: tf.Tensor[]): void {
    if (list.length !== this.layout.specs.length) throw new Error(`weights: expected ${this.layout.specs.length} tensors, got ${list.length}`);
    const next: Params = {};
    this.layout.specs.forEach((s, i) => (next[s.name] = list[i]!));
    this.dispose();
    this.tensors = next;
  }

  /** Tensors in layout order (the order of the flat buffer and of gradients). */
  list(): tf.Tensor[] {
    return this.layout.specs.map((s) => this.tensors[s.name]);
  }

  dispose(): void {
    tf.dispose(Object.values(this.tensors));
    this.tensors = {};
  }
}
