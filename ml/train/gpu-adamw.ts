/// <reference types="@webgpu/types" />
/**
 * The GPU-resident optimizer step for a worker without peers on `webgpu`: global-norm clip +
 * AdamW in WGSL compute passes over the gradients where the backward pass left them. No gradient
 * is read back; the weights stay tfjs tensors and the moments stay GPU buffers across steps; the
 * loss and the norm (16 bytes) are the only read-back.
 *
 * Same semantics as the CPU update (./adamw.ts, ./update-task.ts), in float32 arithmetic instead of
 * float64 (WGSL has no f64):
 *   norm² = Σ g² over every parameter (the masked ones as 0), norm = √norm²,
 *   scale = clipNorm / norm if 0 < clipNorm < norm, else 1,
 *   g' = g·scale, m = β1·m + (1−β1)·g', v = β2·v + (1−β2)·g'²,
 *   w = f·(w − stepSize·m / (√v·invSqrtC2 + ε)), stepSize = lr/(1−β1ᵗ), invSqrtC2 = 1/√(1−β2ᵗ),
 *   f = 1 − lr·weightDecay on dense matrices, 1 elsewhere; masked weights = 0.
 * The norm is summed in a different order than the CPU's fixed blocks (per workgroup, then a tree),
 * so it agrees to float32 rounding, not bit for bit (a worker without peers has no replica to agree with).
 *
 * Passes per step, all in one command buffer: one dispatch per parameter for its sum of squares
 * (partial sums per workgroup), one dispatch that sums the partials into [norm², norm, scale,
 * loss], one dispatch per parameter for AdamW. A dispatch per parameter, not one over a flat
 * buffer, because tfjs gives each weight tensor its own buffer (a binding cannot span buffers).
 *
 * The AdamW pass writes the new weights into a new tensor per parameter (a buffer from tfjs's
 * pool, the old tensor is then disposed and its buffer returns to the pool): a tfjs tensor is
 * never changed in place (see ml/webgpu-access.ts); m and v are ours and are updated in place.
 */
import { tf } from '../tf.ts';
import type { WebGPUAccess } from '../webgpu-access.ts';
import type { ParamLayout } from '../model/spec.ts';
import type { AdamWOptions } from './adamw.ts';

const WG = 256;
/** at most this many workgroups per dispatch (grid-stride loops cover the rest) */
const MAX_GROUPS = 4096;
/** workgroups of a parameter's sum of squares: about 4 elements per thread at least, ≤ 256 partials */
const normGroups = (n: number) => Math.max(1, Math.min(256, Math.ceil(n / (WG * 4))));
/** per-parameter uniforms live in one buffer, one record per minUniformBufferOffsetAlignment (256) */
const RECORD = 256;

const NORM_WGSL = (mask: boolean) => /* wgsl */ `
struct Param { n: u32, partialAt: u32, groups: u32, decays: u32 };
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
@group(0) @binding(2) var<uniform> p: Param;
${mask ? '@group(0) @binding(3) var<storage, read> keep: array<f32>;' : ''}
var<workgroup> acc: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  var s = 0.0;
  let stride = p.groups * ${WG}u;
  for (var i = wg.x * ${WG}u + li; i < p.n; i = i + stride) {
    let x = g[i]${mask ? ' * keep[i]' : ''};
    s = s + x * x;
  }
  acc[li] = s;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k = k / 2u) {
    if (li < k) { acc[li] = acc[li] + acc[li + k]; }
    workgroupBarrier();
  }
  if (li == 0u) { partials[p.partialAt + wg.x] = acc[0]; }
}`;

const FINAL_WGSL = /* wgsl */ `
struct Final { count: u32, clipNorm: f32, hasLoss: u32, _pad: u32 };
@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<uniform> u: Final;
@group(0) @binding(3) var<storage, read> loss: array<f32>;
var<workgroup> acc: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  for (var i = li; i < u.count; i = i + ${WG}u) { s = s + partials[i]; }
  acc[li] = s;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k = k / 2u) {
    if (li < k) { acc[li] = acc[li] + acc[li + k]; }
    workgroupBarrier();
  }
  if (li == 0u) {
    let sq = acc[0];
    let norm = sqrt(sq);
    stats[0] = sq;
    stats[1] = norm;
    stats[2] = select(1.0, u.clipNorm / norm, u.clipNorm > 0.0 && norm > u.clipNorm);
    stats[3] = select(0.0, loss[0], u.hasLoss != 0u);
  }
}`;

const ADAMW_WGSL = (mask: boolean) => /* wgsl */ `
struct Step { stepSize: f32, invSqrtC2: f32, beta1: f32, beta2: f32, ob1: f32, ob2: f32, epsilon: f32, decay: f32 };
struct Param { n: u32, partialAt: u32, groups: u32, decays: u32 };
@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> stats: array<f32>;
@group(0) @binding(6) var<uniform> st: Step;
@group(0) @binding(7) var<uniform> p: Param;
${mask ? '@group(0) @binding(8) var<storage, read> keep: array<f32>;' : ''}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let scale = stats[2];
  let f = select(1.0, st.decay, p.decays != 0u);
  let stride = nw.x * ${WG}u;
  for (var i = gid.x; i < p.n; i = i + stride) {
    let gi = g[i] * scale${mask ? ' * keep[i]' : ''};
    let mi = st.beta1 * m[i] + st.ob1 * gi;
    let vi = st.beta2 * v[i] + st.ob2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    ${mask ? 'out[i] = select(0.0, f * (w[i] - (st.stepSize * mi) / (sqrt(vi) * st.invSqrtC2 + st.epsilon)), keep[i] != 0.0);' : 'out[i] = f * (w[i] - (st.stepSize * mi) / (sqrt(vi) * st.invSqrtC2 + st.epsilon));'}
  }
}`;

export interface GpuStepParams {
  lr: number;
  /** the step number after this step (AdamW's t, from 1) */
  t: number;
  /** 0 = no clipping */
  clipNorm: number;
}

export class GpuAdamW {
  private readonly sizes: number[];
  private readonly m: GPUBuffer[];
  private readonly v: GPUBuffer[];
  private keep: GPUBuffer[] | undefined;
  private readonly partials: GPUBuffer;
  private readonly partialCount: number;
  private readonly params: GPUBuffer;
  private readonly stepUniform: GPUBuffer;
  private readonly finalUniform: GPUBuffer;
  private readonly stats: GPUBuffer;
  private readonly statsRead: GPUBuffer;
  private readonly noLoss: GPUBuffer;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  /** dispatches recorded by the last step (for the docs' and the bench's accounting) */
  lastDispatches = 0;

  constructor(private readonly gpu: WebGPUAccess, readonly layout: ParamLayout, private readonly opts: AdamWOptions) {
    const dev = gpu.device;
    this.sizes = layout.specs.map((s) => s.size);
    this.m = this.sizes.map((n) => gpu.createBuffer(4 * n));
    this.v = this.sizes.map((n) => gpu.createBuffer(4 * n));
    const records = new Uint32Array((RECORD / 4) * this.sizes.length);
    let at = 0;
    layout.specs.forEach((s, i) => {
      const groups = normGroups(s.size);
      records.set([s.size, at, groups, s.kind === 'dense' ? 1 : 0], (RECORD / 4) * i);
      at += groups;
    });
    this.partialCount = at;
    this.partials = gpu.createBuffer(4 * at);
    this.params = dev.createBuffer({ size: records.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    dev.queue.writeBuffer(this.params, 0, records.buffer);
    this.stepUniform = dev.createBuffer({ size: 32, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.finalUniform = dev.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.stats = gpu.createBuffer(16);
    this.statsRead = dev.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.noLoss = gpu.createBuffer(16);
  }

  private pipeline(name: string, code: string): GPUComputePipeline {
    let p = this.pipelines.get(name);
    if (!p) {
      const module = this.gpu.device.createShaderModule({ code, label: `ttc-${name}` });
      p = this.gpu.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: `ttc-${name}` });
      this.pipelines.set(name, p);
    }
    return p;
  }

  /** Uploads whole-layout moments (a checkpoint's, a fresh zero state). */
  setMoments(m: Float32Array, v: Float32Array): void {
    this.gpu.flush(); // no recorded step may run after these writes
    this.layout.specs.forEach((s, i) => {
      this.gpu.write(this.m[i]!, 0, m.subarray(s.offset, s.offset + s.size));
      this.gpu.write(this.v[i]!, 0, v.subarray(s.offset, s.offset + s.size));
    });
  }

  /** Reads the moments back into whole-layout arrays. */
  async readMoments(m: Float32Array, v: Float32Array): Promise<void> {
    const parts = this.layout.specs.flatMap((s, i) => [
      { buffer: this.m[i]!, bytes: 4 * s.size, into: m, at: s.offset },
      { buffer: this.v[i]!, bytes: 4 * s.size, into: v, at: s.offset },
    ]);
    await this.gpu.read(parts);
  }

  /** Pruning mask (whole layout, 1 = keep), or none. */
  setMask(mask: Uint8Array | undefined): void {
    this.keep?.forEach((b) => b.destroy());
    this.keep = undefined;
    if (!mask) return;
    this.gpu.flush();
    this.keep = this.layout.specs.map((s) => this.gpu.createBuffer(4 * s.size, Float32Array.from(mask.subarray(s.offset, s.offset + s.size))));
  }

  /**
   * Records and submits one step: norm, clip scale, AdamW. Returns the new weight tensors (layout
   * order); the caller disposes the old ones and the gradients (safe at once: everything later
   * that reuses their buffers is queued after this). Read the loss and norm with readStats().
   */
  step(weights: tf.Tensor[], grads: tf.Tensor[], loss: tf.Tensor | undefined, s: GpuStepParams): tf.Tensor[] {
    const P = this.sizes.length;
    if (weights.length !== P || grads.length !== P) throw new Error(`GpuAdamW.step: ${weights.length} weights and ${grads.length} gradients for ${P} parameters`);
    const { gpu } = this;
    const dev = gpu.device;
    const { beta1, beta2, epsilon, weightDecay } = this.opts;
    // the same constants as the CPU update (computed in float64, then rounded once to float32)
    const decay = weightDecay > 0 && s.lr > 0 ? 1 - s.lr * weightDecay : 1;
    const stepSize = s.lr / (1 - Math.pow(beta1, s.t));
    const invSqrtC2 = 1 / Math.sqrt(1 - Math.pow(beta2, s.t));
    const wBufs = weights.map((t) => gpu.buffer(t));
    const gBufs = grads.map((t) => gpu.buffer(t));
    const lossBuf = loss ? gpu.buffer(loss) : this.noLoss;
    // tfjs's recorded kernels (the backward pass) first; and the uniform writes below must not
    // land before a previous step's recorded-but-unsubmitted dispatches that read them
    gpu.flush();
    dev.queue.writeBuffer(this.stepUniform, 0, new Float32Array([stepSize, invSqrtC2, beta1, beta2, 1 - beta1, 1 - beta2, epsilon, decay]).buffer);
    const fin = new ArrayBuffer(16);
    new Uint32Array(fin, 0, 1)[0] = this.partialCount;
    new Float32Array(fin, 4, 1)[0] = s.clipNorm;
    new Uint32Array(fin, 8, 1)[0] = loss ? 1 : 0;
    dev.queue.writeBuffer(this.finalUniform, 0, fin);

    const masked = this.keep !== undefined;
    const normP = this.pipeline(masked ? 'norm-mask' : 'norm', NORM_WGSL(masked));
    const finalP = this.pipeline('final', FINAL_WGSL);
    const adamP = this.pipeline(masked ? 'adamw-mask' : 'adamw', ADAMW_WGSL(masked));
    const param = (i: number): GPUBindingResource => ({ buffer: this.params, offset: RECORD * i, size: 16 });

    const enc = dev.createCommandEncoder({ label: 'ttc-gpu-adamw' });
    const pass = enc.beginComputePass();
    let dispatches = 0;
    pass.setPipeline(normP);
    for (let i = 0; i < P; i++) {
      const entries: GPUBindGroupEntry[] = [
        { binding: 0, resource: { buffer: gBufs[i]! } },
        { binding: 1, resource: { buffer: this.partials } },
        { binding: 2, resource: param(i) },
      ];
      if (masked) entries.push({ binding: 3, resource: { buffer: this.keep![i]! } });
      pass.setBindGroup(0, dev.createBindGroup({ layout: normP.getBindGroupLayout(0), entries }));
      pass.dispatchWorkgroups(normGroups(this.sizes[i]!));
      dispatches++;
    }
    pass.setPipeline(finalP);
    pass.setBindGroup(
      0,
      dev.createBindGroup({
        layout: finalP.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: this.partials } },
          { binding: 1, resource: { buffer: this.stats } },
          { binding: 2, resource: { buffer: this.finalUniform } },
          { binding: 3, resource: { buffer: lossBuf } },
        ],
      }),
    );
    pass.dispatchWorkgroups(1);
    dispatches++;
    pass.setPipeline(adamP);
    const next: tf.Tensor[] = [];
    for (let i = 0; i < P; i++) {
      const { tensor, buffer } = gpu.newTensor(weights[i]!.shape);
      next.push(tensor);
      const entries: GPUBindGroupEntry[] = [
        { binding: 0, resource: { buffer: wBufs[i]! } },
        { binding: 1, resource: { buffer: gBufs[i]! } },
        { binding: 2, resource: { buffer: this.m[i]! } },
        { binding: 3, resource: { buffer: this.v[i]! } },
        { binding: 4, resource: { buffer } },
        { binding: 5, resource: { buffer: this.stats } },
        { binding: 6, resource: { buffer: this.stepUniform } },
        { binding: 7, resource: param(i) },
      ];
      if (masked) entries.push({ binding: 8, resource: { buffer: this.keep![i]! } });
      pass.setBindGroup(0, dev.createBindGroup({ layout: adamP.getBindGroupLayout(0), entries }));
      pass.dispatchWorkgroups(Math.max(1, Math.min(MAX_GROUPS, Math.ceil(this.sizes[i]! / WG))));
      dispatches++;
    }
    pass.end();
    enc.copyBufferToBuffer(this.stats, 0, this.statsRead, 0, 16);
    dev.queue.submit([enc.finish()]);
    this.lastDispatches = dispatches;
    return next;
  }

  /** The last step's loss (0 if it was given none) and gradient norm before clipping. */
  async readStats(): Promise<{ loss: number; norm: number }> {
    await this.statsRead.mapAsync(GPUMapMode.READ);
    const s = new Float32Array(this.statsRead.getMappedRange().slice(0));
    this.statsRead.unmap();
    return { loss: s[3]!, norm: s[1]! };
  }

  dispose(): void {
    for (const b of [...this.m, ...this.v, ...(this.keep ?? []), this.partials, this.params, this.stepUniform, this.finalUniform, this.stats, this.statsRead, this.noLoss]) b.destroy();
    this.keep = undefined;
  }
}
