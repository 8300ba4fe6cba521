/**
 * The single import point for TensorFlow.js in this project. The plain-Node entry of
 * `@tensorflow/tfjs-core` (its CommonJS bundle) registers neither gradients nor chained
 * ops, and its ESM files use directory imports that Node refuses; the `@tensorflow/tfjs`
 * Node bundle registers both onto the same shared tfjs-core engine, so we import it once here.
 */
import * as tf from '@tensorflow/tfjs';

export { tf };
export type Tensor = tf.Tensor;

// PROD silences tfjs's "install tfjs-node" banner; ml/backend.ts logs the backend choice itself.
tf.env().set('PROD', true);
