/// <reference types="@webgpu/types" />
/**
 * A compute dispatch with several outputs, recorded into tfjs's webgpu command stream (4.22).
 *
 * tfjs's `runWebGPUProgram` binds exactly one writable buffer (the output) and declares every input
 * read-only, so a kernel with two outputs (attention: ctx and lse; its gradient: dk and dv) would
 * need a second pass or copies. This records the same thing `recordAndSubmit` does — uniforms from
 * the backend's pool, the buffers marked as owned by the pending command queue (so a tensor
 * disposed before the queue is submitted is released only after it), the shared compute pass, the
 * deferred-submit batching — but with our own complete WGSL module and bind group. The shader is
 * written whole by the caller: bindings 0…outputs−1 are the outputs (read_write), then the inputs
 * (read), then the uniform block, in that order.
 */
import { tf } from '../../tf.ts';

type DataId = object;
export type Uniform = { type: 'float32' | 'int32' | 'uint32'; data: number[] };

/** The members of tfjs's WebGPUBackend (4.22) this uses; checked by `dispatchInternals`. */
interface BackendInternals {
  device: GPUDevice;
  tensorMap: { get(id: DataId): { resource?: unknown } | undefined };
  makeTensorInfo(shape: number[], dtype: 'float32'): tf.TensorInfo;
  disposeData(id: DataId): boolean;
  uploadToGPU(id: DataId): void;
  makeUniforms(u: Uniform[]): GPUBufferBinding;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  commandEncoder: GPUCommandEncoder;
  computePassEncoder: GPUComputePassEncoder | null;
  commandQueueOwnedIds: WeakSet<DataId>;
  dispatchCountInPass: number;
  activeTimers?: { name: string; query: Promise<number> }[] | null;
}

const METHODS = ['makeTensorInfo', 'disposeData', 'uploadToGPU', 'makeUniforms', 'ensureCommandEncoderReady', 'endComputePassEncoder', 'submitQueue'] as const;

/** The backend's internals, or an error saying which is missing (another tfjs version). */
export function dispatchInternals(backend: unknown): BackendInternals {
  const b = backend as Partial<Record<string, unknown>>;
  const missing = METHODS.filter((m) => typeof b?.[m] !== 'function');
  if (!b?.device || !(b.commandQueueOwnedIds instanceof WeakSet) || typeof b.dispatchCountInPass !== 'number') missing.push('device/commandQueueOwnedIds/dispatchCountInPass' as never);
  if (missing.length) throw new Error(`webgpu backend lacks ${missing.join(', ')} (tfjs-backend-webgpu 4.22 expected)`);
  return backend as BackendInternals;
}

const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

function pipeline(dev: GPUDevice, key: string, source: () => string): GPUComputePipeline {
  let cache = pipelines.get(dev);
  if (!cache) pipelines.set(dev, (cache = new Map()));
  let p = cache.get(key);
  if (!p) {
    const module = dev.createShaderModule({ code: source(), label: key });
    p = dev.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: key });
    cache.set(key, p);
  }
  return p;
}

export interface Dispatch {
  /** pipeline cache key: must determine the WGSL text */
  key: string;
  wgsl: () => string;
  outputs: tf.TensorInfo[];
  inputs: tf.TensorInfo[];
  uniforms: Uniform[];
  workgroups: [number, number, number];
}

/** Records one dispatch writing `outputs` (allocated here if they have no buffer yet). */
export function dispatch(be: BackendInternals, d: Dispatch): void {
  for (const t of [...d.outputs, ...d.inputs]) be.uploadToGPU(t.dataId);
  const pipe = pipeline(be.device, d.key, d.wgsl);
  const buffer = (t: tf.TensorInfo) => ({ buffer: be.tensorMap.get(t.dataId)!.resource as GPUBuffer });
  const entries: GPUBindGroupEntry[] = [...d.outputs, ...d.inputs].map((t, i) => ({ binding: i, resource: buffer(t) }));
  entries.push({ binding: entries.length, resource: be.makeUniforms(d.uniforms) });
  for (const t of [...d.outputs, ...d.inputs]) be.commandQueueOwnedIds.add(t.dataId);
  const bindGroup = be.device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries });
  be.ensureCommandEncoderReady();
  if (!be.computePassEncoder) be.computePassEncoder = be.commandEncoder.beginComputePass({});
  be.computePassEncoder.setPipeline(pipe);
  be.computePassEncoder.setBindGroup(0, bindGroup);
  be.computePassEncoder.dispatchWorkgroups(...d.workgroups);
  be.dispatchCountInPass++;
  const timing = be.activeTimers != null;
  if (timing || (tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number) <= be.dispatchCountInPass) {
    be.endComputePassEncoder();
    // under tf.time/profile: no timestamp query of our own; the kernel shows as 0 ms
    if (timing) be.activeTimers!.push({ name: d.key, query: Promise.resolve(0) });
    else be.submitQueue();
  }
}
