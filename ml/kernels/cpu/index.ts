/**
 * The fused kernels of the CPU backends (`cpu`, `wasm`; see ml/kernels/fused.ts for the contract):
 * JS loops over the tensors' own memory (./io.ts). Registered, self-tested and activated by
 * ml/backend.ts. Attention is not here (ml/kernels/cpu-attention.ts).
 */
import type { FusedImpl } from '../fused.ts';
import { installColumnSum } from './column-sum.ts';
import { biasGeluImpl } from './bias-gelu.ts';
import { embeddingGradImpl } from './embedding-grad.ts';
import { layerNormImpl } from './layer-norm.ts';
import { softmaxXentImpl } from './softmax-xent.ts';

export { columnSumInfo, columnSumStats, installColumnSum, uninstallColumnSum } from './column-sum.ts';

/**
 * Every fused-kernel implementation for `backend` ('cpu' or 'wasm'), one per op at most. Also
 * installs the leading-axes `Sum` on that backend (./column-sum.ts: tfjs's own kernel name, so not
 * a contract op; checked on install, see columnSumInfo()), which the bias gradients of the dense
 * layers go through: it rides with the fused kernels so `fusedKernels: false` measures without it.
 */
export function cpuFusedImpls(backend: string): FusedImpl[] {
  if (backend !== 'cpu' && backend !== 'wasm') return [];
  installColumnSum(backend);
  return [layerNormImpl(backend), biasGeluImpl(backend), softmaxXentImpl(backend), embeddingGradImpl(backend)];
}
