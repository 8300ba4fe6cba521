/**
 * Tensor memory access for JS kernels on the `cpu` and `wasm` backends: inputs are read as views
 * of the backend's own memory (no copy), outputs are allocated by the backend and written in
 * place. On wasm every allocation may grow (and so detach) the heap: a kernel allocates all its
 * outputs first and only then takes views (`view()`), as ml/kernels/matmul.ts does.
 */
import type { tf as TF } from '../../tf.ts';

type TensorInfo = TF.TensorInfo;
export interface Output {
  info: TensorInfo;
  /** a view of the output's memory; take it after the call's last allocation */
  view(): Float32Array;
}

export interface KernelIO {
  f32(t: TensorInfo): Float32Array;
  i32(t: TensorInfo): Int32Array;
  /** a float32 output of this shape (uninitialised on wasm) */
  alloc(shape: number[]): Output;
}

export const sizeOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/* eslint-disable @typescript-eslint/no-explicit-any */
function cpuIO(backend: any): KernelIO {
  const values = (t: TensorInfo) => backend.data.get(t.dataId).values;
  return {
    f32: (t) => values(t) as Float32Array,
    i32: (t) => values(t) as Int32Array,
    alloc(shape) {
      const v = new Float32Array(sizeOf(shape));
      const info = backend.makeTensorInfo(shape, 'float32', v) as TensorInfo;
      return { info, view: () => v };
    },
  };
}

function wasmIO(backend: any): KernelIO {
  return {
    f32: (t) => backend.typedArrayFromHeap(t) as Float32Array,
    i32: (t) => backend.typedArrayFromHeap(t) as Int32Array,
    alloc(shape) {
      const info = backend.makeOutput(shape, 'float32') as TensorInfo;
      return { info, view: () => backend.typedArrayFromHeap(info) as Float32Array };
    },
  };
}

export function ioFor(backendName: string, backend: any): KernelIO {
  return backendName === 'wasm' ? wasmIO(backend) : cpuIO(backend);
}
/* eslint-enable @typescript-eslint/no-explicit-any */

/** A kernel body gets the IO, the inputs by name and the attrs. */
export type Body = (io: KernelIO, inputs: Record<string, TensorInfo>, attrs: Record<string, unknown>) => TensorInfo[];

/** Wraps a body as a tfjs kernel config for `backendName`. */
export function kernel(kernelName: string, backendName: string, body: Body): TF.KernelConfig {
  return {
    kernelName,
    backendName,
    kernelFunc: ((args: { inputs: Record<string, TensorInfo>; backend: unknown; attrs?: Record<string, unknown> }) =>
      body(ioFor(backendName, args.backend), args.inputs, args.attrs ?? {})) as unknown as TF.KernelFunc,
  };
}
