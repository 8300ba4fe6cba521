/**
 * Re-registering one of tfjs's own kernels (Sum, GatherV2) on a backend with a wrapper that takes
 * the calls it is faster at and hands every other call to the original. Idempotent per
 * (kernel, backend); `restoreKernel` puts the original back.
 */
import { tf } from '../../tf.ts';

const originals = new Map<string, tf.KernelConfig>();
const key = (kernelName: string, backendName: string) => `${backendName}/${kernelName}`;

/** Wraps the backend's kernel: `make(original)` is the new kernel function. False if there is none to wrap. */
export function replaceKernel(kernelName: string, backendName: string, make: (original: tf.KernelFunc) => tf.KernelFunc): boolean {
  if (originals.has(key(kernelName, backendName))) return true;
  const orig = tf.getKernel(kernelName, backendName);
  if (!orig) return false;
  tf.unregisterKernel(kernelName, backendName);
  originals.set(key(kernelName, backendName), orig);
  // the original's setupFunc (wasm's cwrap) must still run: the fallback calls it
  tf.registerKernel({ ...orig, kernelFunc: make(orig.kernelFunc) });
  return true;
}

export function restoreKernel(kernelName: string, backendName: string): void {
  const orig = originals.get(key(kernelName, backendName));
  if (!orig) return;
  tf.unregisterKernel(kernelName, backendName);
  tf.registerKernel(orig);
  originals.delete(key(kernelName, backendName));
}

export function isReplaced(kernelName: string, backendName: string): boolean {
  return originals.has(key(kernelName, backendName));
}
