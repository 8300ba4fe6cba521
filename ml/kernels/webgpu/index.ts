/**
 * The fused kernels of the webgpu backend (WGSL programs run through tfjs's webgpu backend; see
 * ml/kernels/fused.ts for the contract). Registered here, self-tested and activated by ml/backend.ts.
 */
import type { FusedImpl } from '../fused.ts';
import { webgpuAttention } from './attention.ts';
import { biasGeluImpl } from './bias-gelu.ts';
import { embeddingGradImpl } from './embedding-grad.ts';
import { layerNormImpl } from './layer-norm.ts';
import { softmaxXentImpl } from './softmax-xent.ts';

/** Every webgpu fused-kernel implementation (one per op at most). */
export function webgpuFusedImpls(): FusedImpl[] {
  return [layerNormImpl, biasGeluImpl, webgpuAttention(), softmaxXentImpl, embeddingGradImpl];
}
