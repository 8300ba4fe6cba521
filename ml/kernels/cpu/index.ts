/**
 * The fused kernels of the CPU backends (`cpu`, `wasm`; see ml/kernels/fused.ts for the contract):
 * JS loops over the tensors' own memory (./io.ts). Registered, self-tested and activated by
 * ml/backend.ts. Attention is not here (ml/kernels/cpu-attention.ts).
 */
import type { FusedImpl } from '../fused.ts';
import { installColumnSum } from './column-sum.ts';
import { installGatherRows } from './gather-rows.ts';
import { installSharedIdentity } from './identity.ts';
import { biasGeluImpl } from './bias-gelu.ts';
import { embeddingGradImpl } from './embedding-grad.ts';
import { layerNormImpl } from './layer-norm.ts';
import { softmaxXentImpl } from './softmax-xent.ts';

export { columnSumInfo, columnSumStats, installColumnSum, uninstallColumnSum } from './column-sum.ts';
export { gatherRowsStats, installGatherRows, uninstallGatherRows } from './gather-rows.ts';
export { identityStats, installSharedIdentity, uninstallSharedIdentity } from './identity.ts';

/**
 * Every fused-kernel implementation for `backend` ('cpu' or 'wasm'), one per op at most. Also
 * re-registers some of tfjs's own kernels on that backend (not contract ops; each takes only the
 * calls it is faster at): `Sum` over leading axes (./column-sum.ts, checked on install, see
 * columnSumInfo()), which the dense layers' bias gradients go through, and `GatherV2` of rows
 * (./gather-rows.ts), the embedding lookups; and on wasm `Identity`, made copy-free
 * (./identity.ts: tfjs clones every tensor a custom gradient saves). They ride with the fused
 * kernels, so `fusedKernels: false` measures without them.
 */
export function cpuFusedImpls(backend: string): FusedImpl[] {
  if (backend !== 'cpu' && backend !== 'wasm') return [];
  installColumnSum(backend);
  installGatherRows(backend);
  installSharedIdentity(backend);
  return [layerNormImpl(backend), biasGeluImpl(backend), softmaxXentImpl(backend), embeddingGradImpl(backend)];
}
