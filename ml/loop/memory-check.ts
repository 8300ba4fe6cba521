/**
 * The run's memory needs as ml/backend.ts asks for them: one MLM training step of the config's
 * model and per-rank batch (ml/model/memory.ts) against the backend's limit and the machine's or
 * pod's memory. `ttc train` passes it to initBackend before the run directory is created, so a
 * model that fits nowhere is refused with nothing written; workers pass it too.
 */
import type { Config } from '../../core/config/schema.ts';
import type { MemoryFit } from '../backend.ts';
import { numMaskedPerSeq } from '../data/masking.ts';
import { estimateMemory, fits, hostMemoryLimit, type HostMemory, type MemoryBackend } from '../model/memory.ts';
import { modelDims } from '../train/controller.ts';

export function memoryFit(config: Config, host: HostMemory = hostMemoryLimit()): MemoryFit {
  const dims = modelDims(config);
  const batch = config.train.batchSize;
  const estimate = (backend: MemoryBackend) => estimateMemory(dims, batch, numMaskedPerSeq(dims.seqLen), backend);
  return {
    subject: `${estimate('cpu').params.toLocaleString('en')} parameters, batch ${batch}×${dims.seqLen}`,
    fits: (backend) => fits(estimate(backend), host),
  };
}
