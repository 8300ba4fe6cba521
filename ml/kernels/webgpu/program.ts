/**
 * Running a custom WGSL program through tfjs's webgpu backend (4.22): the backend compiles and
 * caches it by `shaderKey` (plus input ranks/dtypes), binds the output first, then the inputs in
 * `variableNames` order, then a uniform block (NaN, Infinity, every shape and stride, `size` when
 * asked, then the program's own `uniforms`). Inside a kernel function, `backend` is the backend
 * the kernel was called with.
 */
import type { WebGPUBackend, WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import type { tf } from '../../tf.ts';

export type { WebGPUBackend, WebGPUProgram };

export type ProgramUniform = { type: 'float32' | 'int32' | 'uint32'; data: number[] }[];

export function asWebgpu(backend: unknown): WebGPUBackend {
  const b = backend as Partial<WebGPUBackend>;
  if (typeof b?.runWebGPUProgram !== 'function') throw new Error('not the webgpu backend');
  return b as WebGPUBackend;
}

/** Runs program on inputs into a new tensor of program.outputShape (or into `output`). */
export function runProgram(backend: unknown, program: WebGPUProgram, inputs: tf.TensorInfo[], dtype: 'float32' | 'int32' = 'float32', uniforms?: ProgramUniform, output?: tf.TensorInfo): tf.TensorInfo {
  return asWebgpu(backend).runWebGPUProgram(program, inputs, dtype, uniforms, output);
}
