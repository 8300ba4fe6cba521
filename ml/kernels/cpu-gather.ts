/**
 * tfjs `cpu` GatherV2 for the embedding lookups (rows of a 2-D float table by int32 ids, axis 0):
 * one typed-array row copy per id. tfjs-cpu's own kernel computes an index per element through
 * its generic TensorBuffer (BERT-base: ~0.2 s for a [4000, 768] table and 1,024 ids, ~1 ms here).
 * Anything else (other axes, batch dims, other dtypes, out-of-range ids) goes to the original
 * kernel, so its results and errors stay tfjs's own.
 */
import type { tf as TF } from '../tf.ts';

type TensorInfo = TF.TensorInfo;
/* eslint-disable @typescript-eslint/no-explicit-any */
type KernelArgs = { inputs: Record<string, TensorInfo | undefined>; backend: any; attrs?: Record<string, unknown> };

export const gatherStats = { fast: 0, fallback: 0 };

export function makeRowGather(original: TF.KernelFunc): TF.KernelFunc {
  return ((args: KernelArgs) => {
    const { x, indices } = args.inputs;
    const axis = Number(args.attrs?.axis ?? 0);
    const batchDims = Number(args.attrs?.batchDims ?? 0);
    if (x && indices && x.dtype === 'float32' && indices.dtype === 'int32' && x.shape.length === 2 && indices.shape.length === 1 && axis === 0 && batchDims === 0) {
      const [rows, cols] = x.shape as [number, number];
      const table = args.backend.data.get(x.dataId).values as Float32Array;
      const ids = args.backend.data.get(indices.dataId).values as Int32Array;
      const out = new Float32Array(ids.length * cols);
      let ok = true;
      for (let i = 0; i < ids.length; i++) {
        const r = ids[i]!;
        if (!(r >= 0 && r < rows)) {
          ok = false;
          break;
        }
        out.set(table.subarray(r * cols, (r + 1) * cols), i * cols);
      }
      if (ok) {
        gatherStats.fast++;
        return args.backend.makeTensorInfo([ids.length, cols], 'float32', out) as TensorInfo;
      }
    }
    gatherStats.fallback++;
    return original(args as any);
  }) as TF.KernelFunc;
}
/* eslint-enable @typescript-eslint/no-explicit-any */
