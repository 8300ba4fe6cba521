/**
 * The run's memory needs, from one MLM training step of the config's model and per-rank batch
 * (ml/model/memory.ts), in two places:
 * - memoryFit: as ml/backend.ts asks for them, against the backend's limit and the machine's or
 *   pod's memory; `ttc train` passes it to initBackend before the run directory is created, so a
 *   model that fits nowhere is refused with nothing written; workers pass it too.
 * - checkRunFits: before anything is written or loaded (no run directory, no data cache, no
 *   backend), by every command that starts a run (ttc train, local, coordinator, sweep, and a run
 *   server's submissions), for what this machine will hold of it; refused naming the fields that
 *   make it big. Loads no TensorFlow.js.
 */
import { ConfigError } from '../../core/config/load.ts';
import { configSchema, MAX_TYPED_ARRAY_LENGTH, type Config } from '../../core/config/schema.ts';
import { MemoryError } from '../../core/errors.ts';
import type { MemoryFit } from '../backend.ts';
import { numMaskedPerSeq } from '../data/masking.ts';
import { bytesText, COORDINATOR_BYTES_PER_PARAM, estimateMemory, fits, hostMemoryLimit, HOST_MEMORY_MARGIN, PROCESS_BASE_BYTES, WASM_HEAP_LIMIT, WASM_HEAP_MARGIN, type HostMemory, type MemoryBackend } from '../model/memory.ts';
import { modelDims } from '../train/controller.ts';

const stepEstimate = (config: Config, backend: MemoryBackend) => {
  const dims = modelDims(config);
  return estimateMemory(dims, config.train.batchSize, numMaskedPerSeq(dims.seqLen), backend);
};
const subjectOf = (config: Config, params: number) => `${params.toLocaleString('en')} parameters, batch ${config.train.batchSize}×${config.model.seqLen}`;

export function memoryFit(config: Config, host: HostMemory = hostMemoryLimit()): MemoryFit {
  return {
    subject: subjectOf(config, stepEstimate(config, 'cpu').params),
    fits: (backend) => {
      const f = fits(stepEstimate(config, backend), host);
      if (f.ok) return f;
      // a refusal names the fields, as checkRunFits does (wasm: its heap is what overflows)
      const fields = blame(config, (c) => (backend === 'wasm' ? stepEstimate(c, backend).backendBytes : stepEstimate(c, backend).hostBytes));
      return fields ? { ok: false, why: `${f.why}; what makes it big: ${fields}` } : f;
    },
  };
}

/** What this machine holds of a run. */
export interface RunPlace {
  /** training processes on this machine: `ttc train` 1, `ttc local` / `ttc sweep` their N workers, a coordinator alone 0 */
  workers: number;
  /** the coordinator runs here (it holds the run's restart point) */
  coordinator: boolean;
  /** put before the message, e.g. the sweep member */
  label?: string;
}

/**
 * The estimate on the host per worker: a cpu or wasm backend keeps the step's tensors there; a GPU
 * backend (or auto, which may find one) keeps them on the device, so only the trainer's state counts
 * here, and the device is checked when the backend starts.
 */
const hostBackend = (backend: Config['backend']): MemoryBackend => (backend === 'cpu' || backend === 'wasm' ? backend : 'gpu');

function needs(config: Config, place: RunPlace) {
  const e = stepEstimate(config, hostBackend(config.backend));
  const coordinator = place.coordinator ? PROCESS_BASE_BYTES + COORDINATOR_BYTES_PER_PARAM * e.params : 0;
  return { e, coordinator, total: place.workers * e.hostBytes + coordinator };
}

/** The fields that make `measure` big, as "field=value, …": those whose own value, against its default, at least doubles it (else the one that grows it most). */
function blame(config: Config, measure: (c: Config) => number): string {
  const fields = [['model', 'layers'], ['model', 'hidden'], ['model', 'ffn'], ['model', 'heads'], ['model', 'seqLen'], ['model', 'vocab'], ['train', 'batchSize']] as const;
  const schema = configSchema as unknown as Record<string, Record<string, { default: number }>>;
  const value = (c: Config, g: string, k: string) => (c as unknown as Record<string, Record<string, number>>)[g]![k]!;
  const full = measure(config);
  const ratios = fields.flatMap(([g, k]) => {
    const d = schema[g]![k]!.default;
    if (value(config, g, k) <= d) return [];
    const smaller = structuredClone(config);
    (smaller as unknown as Record<string, Record<string, number>>)[g]![k] = d;
    return [{ name: `${g}.${k}=${value(config, g, k)}`, ratio: full / measure(smaller) }];
  }).sort((a, b) => b.ratio - a.ratio);
  const big = ratios.filter((r) => r.ratio >= 2);
  return (big.length > 0 ? big : ratios.slice(0, 1).filter((r) => r.ratio > 1)).map((r) => r.name).join(', ');
}

/**
 * Refuses, before anything is written, a run whose parameters cannot be one typed array
 * (ConfigError), or whose share on this machine does not fit its memory (MemoryError): `place.workers`
 * training steps plus, with the coordinator, the run's restart point.
 */
export function checkRunFits(config: Config, place: RunPlace, host: HostMemory = hostMemoryLimit()): void {
  const n = needs(config, place);
  const { e } = n;
  const say = (fields: string, text: string) => `${place.label ? `${place.label}: ` : ''}${fields ? `${fields}: ` : ''}${text}`;
  if (e.params > MAX_TYPED_ARRAY_LENGTH) {
    throw new ConfigError(say(blame(config, (c) => needs(c, place).e.params), `the model would have ${e.params.toLocaleString('en')} parameters, over the ${MAX_TYPED_ARRAY_LENGTH.toLocaleString('en')} one typed array (its flat weights) can hold`));
  }
  const subject = subjectOf(config, e.params);
  if (place.workers > 0 && e.backend === 'wasm' && e.backendBytes > WASM_HEAP_LIMIT * WASM_HEAP_MARGIN) {
    throw new MemoryError(say(blame(config, (c) => needs(c, place).e.backendBytes), `a training step of ${subject} on backend "wasm" ${fits(e, host).why}`));
  }
  if (n.total <= host.bytes * HOST_MEMORY_MARGIN) return;
  const perWorker = [`parameters + optimizer state ~${bytesText(e.trainerBytes)}`, e.backend === 'gpu' ? "the step's tensors not counted (a GPU backend holds them)" : `the step's tensors ~${bytesText(e.hostBytes - e.trainerBytes - PROCESS_BASE_BYTES)}`].join(', ');
  const what = place.workers === 0 ? `the coordinator of a run of ${e.params.toLocaleString('en')} parameters` : place.workers === 1 && !place.coordinator ? `a training step of ${subject}` : `${place.workers} local workers' training steps of ${subject} and their coordinator`;
  const parts = [...(place.workers > 0 ? [`${place.workers > 1 ? 'per worker: ' : ''}${perWorker}`] : []), ...(place.coordinator ? [`the coordinator's restart point (weights + AdamW moments) ~${bytesText(n.coordinator)}`] : [])].join('; ');
  throw new MemoryError(say(blame(config, (c) => needs(c, place).total), `${what} needs ~${bytesText(n.total)} of host memory (${parts}), over ${HOST_MEMORY_MARGIN * 100}% of the ${bytesText(host.bytes)} limit (${host.source})`));
}
