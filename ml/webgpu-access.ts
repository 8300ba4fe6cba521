/// <reference types="@webgpu/types" />
/**
 * Direct access to the GPU buffers behind tfjs tensors on the `webgpu` backend
 * (@tensorflow/tfjs-backend-webgpu 4.22), for what tfjs's own program interface cannot do: a
 * compute pass that writes several buffers (the GPU-resident AdamW, ml/train/gpu-adamw.ts) and
 * writing new values into a buffer without a staging copy per tensor (the weight hand-back after a
 * CPU update, ml/model/weights.ts).
 *
 * What is used of the backend is not its public API; `webgpuAccess()` checks every field and
 * method once and says which one is missing, so a tfjs upgrade that moves them fails loudly
 * instead of corrupting tensors. Rules that keep raw access safe with tfjs's lazy command
 * encoder and its buffer pool:
 * - `flush()` before touching a buffer from outside tfjs: tfjs records its kernels into a command
 *   encoder it submits only every few dispatches or on a read; work of ours submitted (or a
 *   `queue.writeBuffer`) while that encoder is pending would run before kernels recorded earlier.
 * - tfjs tensors are never written in place: new values go into a buffer taken from tfjs's pool for
 *   a new tensor (`newTensor`), the old tensor is disposed. So nothing that holds a tensor (or a
 *   cache keyed on one) ever sees its values change.
 */
import { tf } from './tf.ts';

interface TensorData {
  resource: GPUBuffer | GPUTexture | null;
  values: unknown;
  refCount: number;
  dtype: string;
}

/** The members of tfjs-backend-webgpu's WebGPUBackend used here. */
interface WebGPUBackendInternals {
  device: GPUDevice;
  queue: GPUQueue;
  commandEncoder: GPUCommandEncoder | null;
  tensorMap: { get(dataId: object): TensorData | undefined };
  submitQueue(): void;
  endComputePassEncoder(): void;
  uploadToGPU(dataId: object): void;
  makeTensorInfo(shape: number[], dtype: 'float32'): { dataId: object; shape: number[]; dtype: 'float32' };
}

const REQUIRED = ['device', 'queue', 'tensorMap', 'submitQueue', 'endComputePassEncoder', 'uploadToGPU', 'makeTensorInfo'] as const;

export class WebGPUAccess {
  readonly device: GPUDevice;

  constructor(private readonly backend: WebGPUBackendInternals) {
    this.device = backend.device;
  }

  /** Submits whatever tfjs has recorded but not yet submitted (see the header). */
  flush(): void {
    const b = this.backend;
    if (b.commandEncoder) {
      b.endComputePassEncoder();
      b.submitQueue();
    }
  }

  /** The GPU buffer holding a float32 tensor's values, uploading them first if they are still on the CPU. */
  buffer(t: tf.Tensor): GPUBuffer {
    this.backend.uploadToGPU(t.dataId);
    const d = this.backend.tensorMap.get(t.dataId);
    const r = d?.resource;
    if (!d || !(r instanceof GPUBuffer)) throw new Error(`webgpu: tensor ${t.id} has no GPU buffer`);
    if (d.dtype !== 'float32') throw new Error(`webgpu: tensor ${t.id} is ${d.dtype}, expected float32`);
    return r;
  }

  /** A new float32 tensor of `shape` whose (uninitialised) buffer comes from tfjs's pool; returns it and its buffer. */
  newTensor(shape: number[]): { tensor: tf.Tensor; buffer: GPUBuffer } {
    const info = this.backend.makeTensorInfo(shape, 'float32');
    this.backend.uploadToGPU(info.dataId); // no values: only takes a pool buffer
    const tensor = tf.engine().makeTensorFromTensorInfo(info, tf.backend());
    return { tensor, buffer: this.buffer(tensor) };
  }

  /**
   * A new tensor holding `values`, written with queue.writeBuffer into a pool buffer (Dawn stages it
   * in its own ring; tfjs's own upload creates a mapped staging buffer per tensor instead).
   */
  tensorFrom(values: Float32Array, shape: number[]): tf.Tensor {
    const { tensor, buffer } = this.newTensor(shape);
    this.write(buffer, 0, values);
    return tensor;
  }

  private scratch: Float32Array | undefined;

  /**
   * queue.writeBuffer of `values` at byte `offset`. Views of a SharedArrayBuffer (the trainer's
   * weights and moments: the update's threads share them) go through a scratch ArrayBuffer: Dawn
   * (the `webgpu` package 0.6.2) refuses a SharedArrayBuffer and crashes the process (SIGSEGV) on
   * a typed-array view of one.
   */
  write(buffer: GPUBuffer, offset: number, values: Float32Array): void {
    if (!(values.buffer instanceof SharedArrayBuffer)) {
      this.device.queue.writeBuffer(buffer, offset, values.buffer, values.byteOffset, values.byteLength);
      return;
    }
    const CHUNK = 4 << 20; // floats
    this.scratch ??= new Float32Array(Math.min(CHUNK, Math.max(values.length, 1024)));
    if (this.scratch.length < Math.min(CHUNK, values.length)) this.scratch = new Float32Array(Math.min(CHUNK, values.length));
    const s = this.scratch;
    for (let a = 0; a < values.length; a += s.length) {
      const n = Math.min(s.length, values.length - a);
      s.set(values.subarray(a, a + n));
      this.device.queue.writeBuffer(buffer, offset + 4 * a, s.buffer, 0, 4 * n);
    }
  }

  /** A buffer of ours (not in tfjs's pool) holding `values` (or zeros), usable as storage and copied from/to. */
  createBuffer(bytes: number, values?: Float32Array, usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST): GPUBuffer {
    const buffer = this.device.createBuffer({ size: Math.max(16, align(bytes, 16)), usage });
    if (values) this.write(buffer, 0, values);
    return buffer;
  }

  /**
   * Reads `parts` (buffer ranges, byte lengths multiples of 4) back into `into` at the given float
   * offsets: one command buffer of copies into one staging buffer per ≤ 64 MiB, then one map each.
   * Flushes tfjs first so that its pending kernels are included.
   */
  async read(parts: Array<{ buffer: GPUBuffer; offset?: number; bytes: number; into: Float32Array; at: number }>): Promise<void> {
    this.flush();
    const LIMIT = 64 << 20;
    for (let i = 0; i < parts.length; ) {
      let bytes = 0;
      let j = i;
      while (j < parts.length && (j === i || bytes + parts[j]!.bytes <= LIMIT)) bytes += align(parts[j++]!.bytes, 4);
      const staging = this.device.createBuffer({ size: Math.max(4, bytes), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const enc = this.device.createCommandEncoder();
      let at = 0;
      for (let k = i; k < j; k++) {
        const p = parts[k]!;
        if (p.bytes > 0) enc.copyBufferToBuffer(p.buffer, p.offset ?? 0, staging, at, p.bytes);
        at += align(p.bytes, 4);
      }
      this.device.queue.submit([enc.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      const all = new Float32Array(staging.getMappedRange());
      at = 0;
      for (let k = i; k < j; k++) {
        const p = parts[k]!;
        p.into.set(all.subarray(at / 4, at / 4 + p.bytes / 4), p.at);
        at += align(p.bytes, 4);
      }
      staging.unmap();
      staging.destroy();
      i = j;
    }
  }
}

const align = (n: number, a: number) => Math.ceil(n / a) * a;

let cached: { backend: unknown; access: WebGPUAccess } | undefined;

/** Raw access to the active tfjs backend if it is `webgpu` (else undefined); throws if its internals are not the expected ones. */
export function webgpuAccess(): WebGPUAccess | undefined {
  if (tf.getBackend() !== 'webgpu') return undefined;
  const backend = tf.backend() as unknown as Record<string, unknown>;
  if (cached?.backend === backend) return cached.access;
  const missing = REQUIRED.filter((k) => backend[k] == null);
  if (missing.length) throw new Error(`webgpu: the tfjs webgpu backend lacks ${missing.join(', ')} (written against @tensorflow/tfjs-backend-webgpu 4.22)`);
  const access = new WebGPUAccess(backend as unknown as WebGPUBackendInternals);
  cached = { backend, access };
  return access;
}
