/**
 * Recording a WGSL compute shader with several outputs into the tfjs webgpu backend's command
 * stream: the one way every fused webgpu kernel (layer norm, bias + GELU, softmax cross-entropy,
 * embedding gradient, attention) records its dispatches. `runWebGPUProgram` (program.ts) binds
 * exactly one output, and the backend has no zero-copy slice, so a kernel with outputs
 * [y, mean, rstd] (or attention's [ctx, lse], its gradient's [dk, dv]) would cost extra
 * dispatches; here each output is its own storage binding, in one dispatch.
 *
 * The shader is whole WGSL written by the kernel (no generated helpers); this module declares its
 * bindings (outputs first, then inputs, then a uniform block of scalars), compiles it once per
 * source text and records the dispatch the way the backend's own `recordAndSubmit` does (4.22):
 * same command encoder and compute pass, buffers owned by the queue until the next submit (so a
 * tensor disposed meanwhile keeps its buffer), the same deferred-submit batching, and under
 * tf.time()/tf.profile() a pass of its own with a 0 ms entry (no timestamp query of ours).
 */
import { tf } from '../../tf.ts';
import { asWebgpu, type WebGPUBackend } from './program.ts';

export type WgslScalar = 'f32' | 'i32' | 'u32';

export interface Binding {
  name: string;
  /**
   * element type of the storage array: 'atomic<u32>' for outputs updated with atomics, 'vec4<f32>'
   * to read a float32 tensor four elements at a time (its size must be a multiple of 4)
   */
  type: WgslScalar | 'atomic<u32>' | 'vec4<f32>';
}

export interface Kernel {
  /** for errors and the shader module's label */
  name: string;
  outputs: Binding[];
  inputs: Binding[];
  /** scalar uniforms, in this order, as `u.NAME` in the shader */
  uniforms?: { name: string; type: WgslScalar }[];
  /** the rest of the shader: constants, helpers and the `@compute` entry point `main` */
  body: string;
}

/** The backend fields `recordAndSubmit` uses that tfjs 4.22 declares private. */
interface Internals {
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  commandQueueOwnedIds: WeakSet<object>;
  dispatchCountInPass: number;
  uniformPendingDisposal: GPUBuffer[];
  bufferManager: { acquireBuffer(size: number, usage: number): GPUBuffer };
  /** non-null inside tf.time()/tf.profile() */
  activeTimers?: { name: string; query: Promise<number> }[] | null;
}

/** What this module calls or reads on the backend, public or not in tfjs-backend-webgpu 4.22. */
const METHODS = ['makeTensorInfo', 'disposeData', 'uploadToGPU', 'ensureCommandEncoderReady', 'endComputePassEncoder', 'submitQueue'] as const;
const FIELDS: [string, (v: unknown) => boolean][] = [
  ['device', (v) => v != null],
  ['queue', (v) => v != null],
  ['tensorMap', (v) => typeof (v as { get?: unknown })?.get === 'function'],
  ['commandQueueOwnedIds', (v) => v instanceof WeakSet],
  ['dispatchCountInPass', (v) => typeof v === 'number'],
  ['uniformPendingDisposal', (v) => Array.isArray(v)],
  ['bufferManager', (v) => typeof (v as { acquireBuffer?: unknown })?.acquireBuffer === 'function'],
];
const checked = new WeakSet<object>();

/** The webgpu backend with its internals, or an error naming each missing member (another tfjs version). */
function backendInternals(backendArg: unknown): [WebGPUBackend, Internals] {
  const backend = asWebgpu(backendArg);
  if (!checked.has(backend)) {
    const b = backend as unknown as Record<string, unknown>;
    const missing = [...METHODS.filter((m) => typeof b[m] !== 'function'), ...FIELDS.filter(([f, ok]) => !ok(b[f])).map(([f]) => f)];
    if (missing.length) throw new Error(`webgpu backend lacks ${missing.join(', ')} (tfjs-backend-webgpu 4.22 expected)`);
    checked.add(backend);
  }
  return [backend, backend as unknown as Internals];
}

type Compiled = { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout; error?: string };
const pipelines = new WeakMap<GPUDevice, Map<string, Compiled>>();

/**
 * WebGPU reports an invalid shader asynchronously, and the dispatch then silently drops its whole
 * command buffer (an output may even keep a pooled buffer's old, plausible values). So compiling
 * runs in an error scope; what it reports is kept here for pipelineErrors(), and a pipeline known
 * to be invalid throws on its next dispatch.
 */
const pendingChecks: Promise<void>[] = [];
const reported: string[] = [];

/** Compile errors of the pipelines created since the last call (waits for their checks). */
export async function pipelineErrors(): Promise<string[]> {
  await Promise.all(pendingChecks.splice(0));
  return reported.splice(0);
}

/** The largest dispatch size per dimension WebGPU guarantees. */
const MAX_GROUPS = 65535;

/** Workgroup grid for `count` workgroups: x first, then y (a shader reads its linear id as GROUP_ID). */
export function grid(count: number): [number, number, number] {
  if (count <= MAX_GROUPS) return [count, 1, 1];
  const y = Math.ceil(count / MAX_GROUPS);
  if (y > MAX_GROUPS) throw new Error(`dispatch of ${count} workgroups is too large`);
  return [MAX_GROUPS, y, 1];
}

/** WGSL: the linear workgroup id of a grid() dispatch (entry point parameters `wid`, `nwg`). */
export const GROUP_ID = 'wid.x + wid.y * nwg.x';

function source(k: Kernel): string {
  const lines: string[] = [];
  let b = 0;
  for (const o of k.outputs) lines.push(`@group(0) @binding(${b++}) var<storage, read_write> ${o.name}: array<${o.type}>;`);
  for (const i of k.inputs) lines.push(`@group(0) @binding(${b++}) var<storage, read> ${i.name}: array<${i.type}>;`);
  if (k.uniforms?.length) {
    lines.push(`struct Uniforms { ${k.uniforms.map((x) => `${x.name}: ${x.type},`).join(' ')} };`);
    lines.push(`@group(0) @binding(${b++}) var<uniform> u: Uniforms;`);
  }
  return `${lines.join('\n')}\n${k.body}`;
}

function compile(device: GPUDevice, k: Kernel, code: string): Compiled {
  let cache = pipelines.get(device);
  if (!cache) pipelines.set(device, (cache = new Map()));
  const hit = cache.get(code);
  if (hit) return hit;
  // explicit layout: 'auto' would drop a binding the shader happens not to read
  const entries: GPUBindGroupLayoutEntry[] = [
    ...k.outputs.map(() => ({ buffer: { type: 'storage' as const } })),
    ...k.inputs.map(() => ({ buffer: { type: 'read-only-storage' as const } })),
    ...(k.uniforms?.length ? [{ buffer: { type: 'uniform' as const } }] : []),
  ].map((e, binding) => ({ binding, visibility: GPUShaderStage.COMPUTE, ...e }));
  device.pushErrorScope('validation');
  const layout = device.createBindGroupLayout({ entries });
  const module = device.createShaderModule({ code, label: k.name });
  const pipeline = device.createComputePipeline({ layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: 'main' }, label: k.name });
  const compiled: Compiled = { pipeline, layout };
  pendingChecks.push(
    device.popErrorScope().then((e) => {
      if (!e) return;
      compiled.error = `${k.name}: ${e.message.split('\n').find((l) => /error/.test(l)) ?? e.message}`;
      reported.push(compiled.error);
    }),
  );
  cache.set(code, compiled);
  return compiled;
}

function uniformBuffer(backend: WebGPUBackend, io: Internals, k: Kernel, values: number[]): GPUBuffer {
  const types = k.uniforms!;
  if (values.length !== types.length) throw new Error(`${k.name}: ${types.length} uniforms, got ${values.length}`);
  const bytes = Math.ceil((types.length * 4) / 16) * 16; // a uniform struct's size rounds to 16
  const data = new ArrayBuffer(bytes);
  const view = new DataView(data);
  types.forEach((t, i) => (t.type === 'f32' ? view.setFloat32(i * 4, values[i], true) : t.type === 'i32' ? view.setInt32(i * 4, values[i], true) : view.setUint32(i * 4, values[i], true)));
  const buf = io.bufferManager.acquireBuffer(bytes, GPUBufferUsage.COPY_DST | GPUBufferUsage.UNIFORM);
  backend.queue.writeBuffer(buf, 0, data, 0, bytes);
  io.uniformPendingDisposal.push(buf); // released by the backend after the next submit
  return buf;
}

export type OutputSpec = { shape: number[]; dtype: 'float32' | 'int32' } | tf.TensorInfo;

/**
 * Records one dispatch of kernel `k` (`groups`: workgroup grid, e.g. from grid()) and returns its
 * outputs: new tensors of the given shapes, or the tensors passed in (written in place, as the
 * backend's `output` argument does). Uniform values in k.uniforms order.
 */
export function dispatch(backendArg: unknown, k: Kernel, groups: [number, number, number], inputs: tf.TensorInfo[], outputs: OutputSpec[], uniforms: number[] = []): tf.TensorInfo[] {
  const [backend, io] = backendInternals(backendArg);
  if (inputs.length !== k.inputs.length || outputs.length !== k.outputs.length) throw new Error(`${k.name}: bindings do not match the kernel`);
  const outs = outputs.map((o) => ('dataId' in o ? o : backend.makeTensorInfo(o.shape, o.dtype)));
  if (groups.some((g) => g === 0)) return outs;
  for (const t of [...outs, ...inputs]) backend.uploadToGPU(t.dataId);
  const { pipeline, layout, error } = compile(backend.device, k, source(k));
  if (error) throw new Error(`invalid WGSL pipeline ${error}`);
  const resources: GPUBindingResource[] = [...outs, ...inputs].map((t) => ({ buffer: backend.tensorMap.get(t.dataId).resource as GPUBuffer }));
  if (k.uniforms?.length) resources.push({ buffer: uniformBuffer(backend, io, k, uniforms) });
  const bindGroup = backend.device.createBindGroup({ layout, entries: resources.map((resource, binding) => ({ binding, resource })) });
  for (const t of [...outs, ...inputs]) io.commandQueueOwnedIds.add(t.dataId);

  backend.ensureCommandEncoderReady();
  if (!io.computePassEncoder) io.computePassEncoder = io.commandEncoder!.beginComputePass({});
  const pass = io.computePassEncoder;
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
  io.dispatchCountInPass++;
  const timing = io.activeTimers != null;
  if (timing || (tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number) <= io.dispatchCountInPass) {
    backend.endComputePassEncoder();
    // under tf.time/profile, as recordAndSubmit: the pass ends here (a timed program after this
    // one times only itself); no timestamp query of our own, so the kernel shows as 0 ms
    if (timing) io.activeTimers!.push({ name: k.name, query: Promise.resolve(0) });
    else backend.submitQueue();
  }
  return outs;
}

/** Frees temporaries; their buffers return to the pool once the queued work using them is submitted. */
export function release(backend: unknown, ts: tf.TensorInfo[]): void {
  const [b] = backendInternals(backend);
  for (const t of ts) b.disposeData(t.dataId);
}

/** A new tensor of zeros, cleared by the command encoder (a buffer clear between compute passes, no dispatch). */
export function zeros(backendArg: unknown, shape: number[], dtype: 'float32' | 'int32' = 'float32'): tf.TensorInfo {
  const [backend, io] = backendInternals(backendArg);
  const t = backend.makeTensorInfo(shape, dtype);
  if (shape.some((d) => d === 0)) return t;
  backend.uploadToGPU(t.dataId);
  backend.ensureCommandEncoderReady();
  backend.endComputePassEncoder();
  io.commandEncoder!.clearBuffer(backend.tensorMap.get(t.dataId).resource as GPUBuffer);
  io.commandQueueOwnedIds.add(t.dataId);
  return t;
}
