/**
 * Counts compute dispatches on the webgpu backend by wrapping Dawn's
 * GPUComputePassEncoder.prototype.dispatchWorkgroups: tfjs's own programs and ttc's fused kernels
 * alike. `restore()` puts the original back; `get()` is the count since the wrap.
 */
type Proto = { dispatchWorkgroups: (...a: unknown[]) => unknown };

export function countingDispatches(): { get: () => number; restore: () => void } {
  const proto = (globalThis as unknown as { GPUComputePassEncoder?: { prototype: Proto } }).GPUComputePassEncoder?.prototype;
  if (!proto) throw new Error('GPUComputePassEncoder is not a global: cannot count dispatches');
  const orig = proto.dispatchWorkgroups;
  let n = 0;
  proto.dispatchWorkgroups = function (this: unknown, ...a: unknown[]) {
    n++;
    return orig.apply(this, a);
  };
  return { get: () => n, restore: () => void (proto.dispatchWorkgroups = orig) };
}
