/**
 * The fused kernels of the webgpu backend (WGSL programs run through tfjs's webgpu backend; see
 * ml/kernels/fused.ts for the contract). Registered here, self-tested and activated by ml/backend.ts.
 */
import type { FusedImpl } from '../fused.ts';

/** Every webgpu fused-kernel implementation (one per op at most). */
export function webgpuFusedImpls(): FusedImpl[] {
  return [];
}
