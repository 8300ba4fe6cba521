/**
 * The fused kernels of the CPU backends (`cpu`, `wasm`; see ml/kernels/fused.ts for the contract).
 * Registered here, self-tested and activated by ml/backend.ts.
 */
import type { FusedImpl } from '../fused.ts';

/** Every fused-kernel implementation for `backend` ('cpu' or 'wasm'), one per op at most. */
export function cpuFusedImpls(backend: string): FusedImpl[] {
  void backend;
  return [];
}
