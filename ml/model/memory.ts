/**
 * How much memory one training step of a model needs, and where it lives, per backend — so that
 * `backend: auto` can pick the CPU backend that holds the model and a model that fits nowhere is
 * refused before anything runs (docs/cpu-large.md).
 *
 * - The trainer's own state is always in JS memory (SharedArrayBuffers): master weights, gradients
 *   and AdamW's two moments, 16 bytes per parameter.
 * - The step's tensors — weight tensors, every activation and every gradient tfjs keeps until the
 *   step's tf.tidy ends (tfjs frees nothing during back-propagation) — live in the backend:
 *   the wasm heap on `wasm` (one 32-bit WebAssembly memory: WASM_HEAP_LIMIT), JS ArrayBuffers on
 *   `cpu` (plus a private copy of the weights for onnxruntime, ml/kernels/matmul.ts), device memory
 *   on a GPU.
 *
 * The tensor peak is a fit to tfjs's measured peak (tf.profile's peakBytes of a gradient
 * computation) over sizes varied one at a time (layers, hidden, ffn, seqLen, heads, batch, vocab);
 * tests/unit/memory.test.ts checks it against a measured step, and the wasm heap after one.
 */
import fs from 'node:fs';
import os from 'node:os';

import { paramLayout, type ModelDims } from './spec.ts';

/**
 * tfjs-backend-wasm 4.22's heap ceiling: its WebAssembly memory is declared with a maximum of
 * 65,536 pages (4 GiB, the memory section of tfjs-backend-wasm-simd.wasm) and its Emscripten glue
 * caps growth at getHeapMax() = 4,294,901,760 bytes (wasm-out/tfjs-backend-wasm-simd.js). Measured:
 * 4,032 MiB of tensors allocated, correct values above 2 GiB, then "Aborted()" (docs/cpu-large.md).
 */
export const WASM_HEAP_LIMIT = 4_294_901_760;
/** wasm is chosen only when the estimate is at most this share of the heap (fragmentation, growth steps) */
export const WASM_HEAP_MARGIN = 0.75;
/** a process may use at most this share of the machine's (or pod's) memory */
export const HOST_MEMORY_MARGIN = 0.85;
/** Node, tfjs, onnxruntime and the loaded data before the model (RSS measured at ~0.4 GB) */
export const PROCESS_BASE_BYTES = 512 * 2 ** 20;

/** What a coordinator holds of a run: its restart point, the weights and AdamW's two moments (f32 each). */
export const COORDINATOR_BYTES_PER_PARAM = 12;

/** Floats tfjs holds at the peak of a step, per unit (fitted, see the header). */
const PEAK = {
  /** per layer: per token × hidden, per token × ffn, per attention score (B·heads·T²), per layer parameter */
  layerHidden: 88,
  layerFfn: 20,
  layerScore: 7,
  layerParam: 3,
  /** embeddings and MLM head: per embedding-table entry ((V + T)·d), per token × hidden, per logit (masked positions × V) */
  embedding: 6,
  headHidden: 31,
  logit: 5,
};

export type MemoryBackend = 'wasm' | 'cpu' | 'gpu';

export interface MemoryEstimate {
  backend: MemoryBackend;
  params: number;
  /** master weights, gradients and AdamW moments in JS memory (16 bytes per parameter) */
  trainerBytes: number;
  /** tfjs's tensors at the step's peak: weights, activations, gradients */
  tensorBytes: number;
  /** what the backend must hold itself: the wasm heap on wasm, device memory on a GPU, 0 on cpu (its tensors are JS memory) */
  backendBytes: number;
  /** the process's memory on the host: trainer state, tensors held in JS (cpu: all of them, plus onnxruntime's weight copies), the wasm heap, the runtime */
  hostBytes: number;
}

/** Floats of tfjs tensors alive at the peak of one MLM training step (forward + backward) with `maskedPerSeq` predictions per sequence. */
export function peakTensorFloats(d: ModelDims, batch: number, maskedPerSeq: number): number {
  const T = d.seqLen;
  const tokens = batch * T;
  const layout = paramLayout(d);
  const layerParams = layout.specs.filter((s) => s.name.startsWith('encoder.layer.0.')).reduce((a, s) => a + s.size, 0);
  const perLayer = PEAK.layerHidden * tokens * d.hidden + PEAK.layerFfn * tokens * d.ffn + PEAK.layerScore * batch * d.heads * T * T + PEAK.layerParam * layerParams;
  const masked = batch * maskedPerSeq;
  const rest = PEAK.embedding * (d.vocab + T) * d.hidden + PEAK.headHidden * tokens * d.hidden + PEAK.logit * masked * d.vocab;
  return d.layers * perLayer + rest;
}

export function estimateMemory(d: ModelDims, batch: number, maskedPerSeq: number, backend: MemoryBackend): MemoryEstimate {
  const params = paramLayout(d).total;
  const trainerBytes = 16 * params;
  const tensorBytes = 4 * peakTensorFloats(d, batch, maskedPerSeq);
  let backendBytes = 0;
  let hostBytes = PROCESS_BASE_BYTES + trainerBytes;
  if (backend === 'cpu') hostBytes += tensorBytes + 4 * params; // + onnxruntime's private weight copies
  else if (backend === 'wasm') {
    backendBytes = tensorBytes;
    hostBytes += tensorBytes;
  } else backendBytes = tensorBytes; // a GPU: tensors on the device, read back into the trainer's buffers
  return { backend, params, trainerBytes, tensorBytes, backendBytes, hostBytes };
}

/** cgroup v2 `memory.max` (or v1 `memory.limit_in_bytes`) text → bytes, or undefined for "max"/unreadable. */
export function parseMemoryMax(text: string): number | undefined {
  const t = text.trim();
  if (t === 'max') return undefined;
  const n = Number(t);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

export interface HostMemory {
  bytes: number;
  /** where the figure comes from, e.g. "os.totalmem()" or "cgroup memory.max" */
  source: string;
}

/** The memory this process may use: the machine's, or a smaller cgroup (a pod's limits.memory; cgroup v2, else v1). */
export function hostMemoryLimit(): HostMemory {
  const total = os.totalmem();
  for (const [file, source] of [['/sys/fs/cgroup/memory.max', 'cgroup memory.max'], ['/sys/fs/cgroup/memory/memory.limit_in_bytes', 'cgroup memory.limit_in_bytes']] as const) {
    let limit: number | undefined;
    try {
      limit = parseMemoryMax(fs.readFileSync(file, 'utf8'));
    } catch {
      continue; // not this cgroup version
    }
    // v1 says "no limit" with a huge number: only a limit below the machine's memory counts
    return limit !== undefined && limit < total ? { bytes: limit, source } : { bytes: total, source: 'os.totalmem()' };
  }
  return { bytes: total, source: 'os.totalmem()' };
}

/** Bytes in MiB below 1 GiB, in GiB, or TiB … EiB once they pass 1,024 of the unit below (a refused config can need petabytes). */
export function bytesText(bytes: number): string {
  if (bytes < 2 ** 30) return `${Math.round(bytes / 2 ** 20)} MiB`;
  const units = ['GiB', 'TiB', 'PiB', 'EiB'];
  let v = bytes / 2 ** 30;
  let i = 0;
  for (; v >= 1024 && i < units.length - 1; i++) v /= 1024;
  return `${v.toFixed(1)} ${units[i]}`;
}

export interface Fit {
  ok: boolean;
  /** one line: the estimate against the limit it was checked against */
  why: string;
}

/** Whether a step of this estimate fits its backend's memory (wasm: with WASM_HEAP_MARGIN) and the host's. */
export function fits(e: MemoryEstimate, host: HostMemory): Fit {
  const hostCap = host.bytes * HOST_MEMORY_MARGIN;
  if (e.backend === 'wasm' && e.backendBytes > WASM_HEAP_LIMIT * WASM_HEAP_MARGIN) {
    return { ok: false, why: `needs ~${bytesText(e.backendBytes)} of tensors in the wasm heap, over ${WASM_HEAP_MARGIN * 100}% of its ${bytesText(WASM_HEAP_LIMIT)} limit (tfjs-backend-wasm's 32-bit memory)` };
  }
  if (e.hostBytes > hostCap) {
    return { ok: false, why: `needs ~${bytesText(e.hostBytes)} of host memory, over ${HOST_MEMORY_MARGIN * 100}% of the ${bytesText(host.bytes)} limit (${host.source})` };
  }
  const where = e.backend === 'wasm' ? `~${bytesText(e.backendBytes)} in the wasm heap (limit ${bytesText(WASM_HEAP_LIMIT)}), ` : '';
  return { ok: true, why: `needs ${where}~${bytesText(e.hostBytes)} of host memory (limit ${bytesText(host.bytes)}, ${host.source})` };
}
