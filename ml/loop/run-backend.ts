/** The compute backend a run config asks for: the one place a config becomes backend options (ttc train, ttc worker). */
import type { Config } from '../../core/config/schema.ts';
import { initBackend, type BackendInfo, type BackendOptions } from '../backend.ts';
import { memoryFit } from './memory-check.ts';

/** The backend options a run config asks for (ttc train and ttc worker alike); the memory fit checks the step's needs (./memory-check.ts). */
export function backendOptions(config: Config): BackendOptions {
  return { threads: config.threads, fastKernels: config.fastKernels, fusedKernels: config.fusedKernels, precision: config.model.precision, memory: memoryFit(config) };
}

/** The config's backend, chosen and checked against the step's memory needs. */
export function initRunBackend(config: Config): Promise<BackendInfo> {
  return initBackend(config.backend, backendOptions(config));
}
