/**
 * Loads onnxruntime-node's native binding and keeps one InferenceSession per graph shape-class
 * (op, transposes, rank, bias/activation). Every dimension of every graph input is symbolic, so a
 * session serves all concrete shapes of its class.
 *
 * We call the binding's synchronous `InferenceSession.run` (dist/binding.js) rather than the public
 * `InferenceSession` API: the public `run` is a Promise (it defers the synchronous native call with
 * setImmediate), and tfjs kernels must return synchronously. The binding is an internal module, so
 * the dependency is pinned to an exact version and `loadOrt` checks the shape of what it finds.
 */
import { createRequire } from 'node:module';
import os from 'node:os';

import { buildModel, type NodeSpec } from './onnx-graph.ts';

export interface OrtTensor {
  readonly data: Float32Array;
  readonly dims: readonly number[];
}
type OrtTensorCtor = new (type: 'float32', data: Float32Array, dims: readonly number[]) => OrtTensor;

interface NativeSession {
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: object): void;
  run(feeds: Record<string, OrtTensor>, fetches: Record<string, OrtTensor | null>, options: object): Record<string, OrtTensor>;
  dispose(): void;
}

interface OrtRuntime {
  version: string;
  Tensor: OrtTensorCtor;
  Session: new () => NativeSession;
}

let runtime: OrtRuntime | null = null;

/** Loads onnxruntime-node once; throws an Error that says why when it cannot. */
export function loadOrt(): OrtRuntime {
  if (runtime) return runtime;
  const req = createRequire(import.meta.url);
  let pkg: { version?: string };
  try {
    pkg = req('onnxruntime-node/package.json') as { version?: string };
  } catch (e) {
    throw new Error(`onnxruntime-node is not installed (${(e as Error).message.split('\n')[0]})`);
  }
  const bindingPath = req.resolve('onnxruntime-node/dist/binding.js');
  const mod = req(bindingPath) as {
    binding?: { InferenceSession?: new () => NativeSession };
    initOrt?: () => void;
  };
  // onnxruntime-common as onnxruntime-node itself resolves it: the binding was handed that Tensor class
  const common = createRequire(bindingPath)('onnxruntime-common') as { Tensor?: OrtTensorCtor };
  if (typeof mod.initOrt !== 'function' || typeof mod.binding?.InferenceSession !== 'function' || typeof common.Tensor !== 'function') {
    throw new Error(`onnxruntime-node ${pkg.version}: unexpected dist/binding.js layout (tested with 1.30.0)`);
  }
  mod.initOrt();
  runtime = { version: pkg.version ?? '?', Tensor: common.Tensor, Session: mod.binding.InferenceSession };
  return runtime;
}

function defaultThreads(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

let threads = defaultThreads();
/** Spinning threads answer faster but burn a core between calls, which the tfjs ops between
 * matmuls (all on the main thread) then lack; off by default, see docs/kernels.md. */
let spinning = false;
const sessions = new Map<string, NativeSession>();

export function disposeSessions(): void {
  for (const s of sessions.values()) {
    try {
      s.dispose();
    } catch {
      /* already gone */
    }
  }
  sessions.clear();
}

/** Threads for the fast matmul (onnxruntime's intra-op pool); at least 1. Drops cached sessions. */
export function setThreads(n: number): void {
  const t = Math.max(1, Math.floor(Number.isFinite(n) ? n : defaultThreads()));
  if (t !== threads) disposeSessions();
  threads = t;
}

export function getThreads(): number {
  return threads;
}

export function setSpinning(on: boolean): void {
  if (on !== spinning) disposeSessions();
  spinning = on;
}

export function getSpinning(): boolean {
  return spinning;
}

export interface GraphSpec {
  nodes: NodeSpec[];
  inputs: { name: string; rank: number }[];
  output: { name: string; rank: number };
  /** further outputs of a multi-output graph (fetched by name like `output`) */
  more?: { name: string; rank: number }[];
}

/** The cached session for `key`, built from `build()` on first use; `maxThreads` caps the pool. */
export function session(key: string, build: () => GraphSpec, maxThreads = Infinity): NativeSession {
  const n = Math.max(1, Math.min(threads, maxThreads));
  const fullKey = `${key}|t${n}`;
  let s = sessions.get(fullKey);
  if (s) return s;
  const rt = loadOrt();
  const g = build();
  const model = buildModel({ nodes: g.nodes, inputs: g.inputs, outputs: [g.output, ...(g.more ?? [])] });
  s = new rt.Session();
  s.loadModel(model.buffer as ArrayBuffer, model.byteOffset, model.byteLength, {
    intraOpNumThreads: n,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: spinning ? '1' : '0' } } },
  });
  sessions.set(fullKey, s);
  return s;
}

export function tensor(data: Float32Array, dims: readonly number[]): OrtTensor {
  return new (loadOrt().Tensor)('float32', data, dims);
}
