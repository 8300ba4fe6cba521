/** Counting the FLOPs the matmul kernels really execute (tests of the analytic counts in ml/flops.ts). */
import { tf } from '../../ml/tf.ts';

/** Wraps the matmul kernels of the active backend to add up 2·m·n·k per executed product. */
export function countMatmulFlops(): { flops: () => number; restore: () => void } {
  const backend = tf.getBackend();
  let total = 0;
  const originals = ['BatchMatMul', '_FusedMatMul'].map((name) => tf.getKernel(name, backend)!);
  for (const k of originals) {
    tf.unregisterKernel(k.kernelName, backend);
    tf.registerKernel({
      ...k,
      kernelFunc: (args) => {
        const [a, b] = [args.inputs.a as tf.TensorInfo, args.inputs.b as tf.TensorInfo];
        const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
        const ra = a.shape.length;
        const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
        const kk = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
        const n = transposeB ? b.shape[b.shape.length - 2] : b.shape[b.shape.length - 1];
        const batch = Math.max(a.shape.slice(0, -2).reduce((x, y) => x * y, 1), b.shape.slice(0, -2).reduce((x, y) => x * y, 1));
        total += 2 * batch * m * n * kk;
        return k.kernelFunc(args);
      },
    });
  }
  return {
    flops: () => total,
    restore: () => {
      for (const k of originals) {
        tf.unregisterKernel(k.kernelName, backend);
        tf.registerKernel(k);
      }
    },
  };
}

