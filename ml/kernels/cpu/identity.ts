/**
 * A copy-free `Identity` on wasm: the output shares the input's memory (a reference count, as
 * tfjs-wasm's own Reshape does and as tfjs-cpu's Identity always has). tfjs-wasm's Identity copies
 * the tensor, and tfjs calls it for every tensor a custom gradient saves (engine.customGrad clones
 * what `save` gets) — the fused ops' inputs, each step — and for gradient pass-throughs: ~50 copies
 * of up to [1024, 512] per M training step. Tensor memory is never written after its kernel
 * returns (every kernel here and in tfjs allocates its outputs), so sharing is safe. Strings (and
 * anything not on this backend) go to the original kernel.
 */
import { tf } from '../../tf.ts';
import { replaceKernel, restoreKernel } from './replace.ts';

type TensorInfo = tf.TensorInfo;
/* eslint-disable @typescript-eslint/no-explicit-any */
type Args = { inputs: { x: TensorInfo }; backend: any };

export const identityStats = { shared: 0, copied: 0 };

function makeIdentity(original: tf.KernelFunc): tf.KernelFunc {
  return ((args: Args) => {
    const { x } = args.inputs;
    const be = args.backend;
    if (x.dtype !== 'string' && typeof be.incRef === 'function' && be.dataIdMap?.has(x.dataId)) {
      identityStats.shared++;
      be.incRef(x.dataId);
      return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
    }
    identityStats.copied++;
    return original(args as unknown as Parameters<tf.KernelFunc>[0]);
  }) as unknown as tf.KernelFunc;
}
/* eslint-enable @typescript-eslint/no-explicit-any */

/** Installs the sharing Identity on `wasm` (tfjs-cpu's already shares; other backends are left alone). */
export function installSharedIdentity(backendName: string): boolean {
  if (backendName !== 'wasm') return false;
  return replaceKernel('Identity', backendName, (orig) => makeIdentity(orig));
}

export function uninstallSharedIdentity(backendName: string): void {
  restoreKernel('Identity', backendName);
}
