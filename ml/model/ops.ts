/** Building blocks of the encoder, written against the tfjs-core API only (runs on every backend). */
import { tf, type Tensor } from '../tf.ts';

export const LAYER_NORM_EPS = 1e-12;

/** Exact (erf) GELU, as in BERT/RoBERTa (`hidden_act: "gelu"`). */
export function gelu(x: Tensor): Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
}

export function layerNorm(x: Tensor, gamma: Tensor, beta: Tensor): Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, LAYER_NORM_EPS)));
  return tf.add(tf.mul(normed, gamma), beta);
}

/** x · W + b for x of shape [N, in]. */
export function dense(x: Tensor, w: Tensor, b: Tensor): Tensor {
  return tf.add(tf.matMul(x, w), b);
}

/**
 * Row lookup `table[ids]` with a gradient built on scatterND. tfjs's own gather gradient
 * (UnsortedSegmentSum) is missing on wasm and takes minutes on cpu (STACK-NOTES.md);
 * scatterND sums duplicate indices, which is exactly the embedding gradient.
 */
export const rowLookup = tf.customGrad(((table: Tensor, ids: Tensor, save: tf.GradSaveFunc) => {
  save([ids]);
  const value = tf.gather(table, ids);
  const tableShape = table.shape;
  return {
    value,
    gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => {
      const [savedIds] = saved;
      const grad = tf.scatterND(tf.expandDims(savedIds, 1), dy as Tensor, tableShape);
      return [grad, tf.zerosLike(savedIds)];
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (table: Tensor, ids: Tensor) => Tensor;

/**
 * Mean softmax cross-entropy of logits [M, V] against integer labels [M], with the closed-form
 * gradient (softmax − onehot) / M: autodiff through logSumExp adds a max/equal pass over the
 * whole [M, V] matrix that costs more than the rest of the head on CPU backends.
 */
export function crossEntropy(logits: Tensor, labels: Tensor, numClasses: number): Tensor {
  const fn = tf.customGrad(((x: Tensor, y: Tensor, save: tf.GradSaveFunc) => {
    const onehot = tf.oneHot(y, numClasses);
    const lse = tf.logSumExp(x, 1, true);
    const logProbs = tf.sub(x, lse);
    save([logProbs, onehot]);
    const value = tf.neg(tf.mean(tf.sum(tf.mul(onehot, logProbs), 1)));
    return {
      value,
      gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => {
        const [lp, oh] = saved;
        const m = lp.shape[0];
        return [tf.mul(tf.sub(tf.exp(lp), oh), tf.div(dy as Tensor, m)), tf.zerosLike(y)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: Tensor, y: Tensor) => Tensor;
  return fn(logits, labels);
}
