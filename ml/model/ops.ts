/**
 * Building blocks of the encoder, written against the tfjs-core API (run on every backend). The
 * element-wise, normalisation, attention and loss blocks are fused ops (ml/kernels/fused.ts): one kernel
 * where a backend registers one, the tfjs composition elsewhere.
 */
import { tf, type Tensor } from '../tf.ts';
import { biasGelu } from '../kernels/fused.ts';

export { attention, biasGelu, crossEntropy, gelu, LAYER_NORM_EPS, layerNorm, rowLookup } from '../kernels/fused.ts';

/** x · W + b for x of shape [N, in]. */
export function dense(x: Tensor, w: Tensor, b: Tensor): Tensor {
  return tf.add(tf.matMul(x, w), b);
}

/** gelu(x · W + b): the bias rides in the fused GELU kernel. */
export function denseGelu(x: Tensor, w: Tensor, b: Tensor): Tensor {
  return biasGelu(tf.matMul(x, w), b);
}
