/**
 * Loads and validates a run config: defaults ← JSON file ← overrides. Unknown fields,
 * wrong types and inconsistent combinations are refused with one message that names
 * every offending field, its value and what was expected.
 */
import fs from 'node:fs';
import { makeConvict, type Config } from './schema.ts';
import { codedError, oneLine } from '../errors.ts';

export const ConfigError = codedError('ConfigError', 'TTC_ERR_CONFIG');
export type ConfigError = InstanceType<typeof ConfigError>;

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? (T[K] extends unknown[] ? T[K] : DeepPartial<T[K]>) : T[K] };

function crossFieldErrors(c: Config): string[] {
  const errors: string[] = [];
  if (c.model.hidden % c.model.heads !== 0) {
    errors.push(`model.hidden: value ${c.model.hidden} must be divisible by model.heads (${c.model.heads})`);
  }
  if (c.model.vocab < 64) errors.push(`model.vocab: value ${c.model.vocab} is too small (expected >= 64)`);
  if (c.model.seqLen < 8) errors.push(`model.seqLen: value ${c.model.seqLen} is too small (expected >= 8)`);
  if (c.model.precision === 'mixed' && c.backend !== 'webgpu' && c.backend !== 'auto') {
    errors.push(`model.precision: "mixed" needs backend webgpu (or auto), got backend "${c.backend}"`);
  }
  if (c.model.precision === 'mixed' && c.dist.gradWire === 'bf16') {
    // a skipped (overflowed) step's inf would enter the bf16 error feedback and stay there
    errors.push('model.precision: "mixed" cannot be combined with dist.gradWire "bf16"');
  }
  const b = c.budget;
  if (b.kind === 'flops' && !(b.flops > 0)) errors.push(`budget.flops: value ${b.flops} must be > 0 when budget.kind is "flops"`);
  if (b.kind === 'seconds' && !(b.seconds > 0)) errors.push(`budget.seconds: value ${b.seconds} must be > 0 when budget.kind is "seconds"`);
  if (b.kind === 'steps' && !(b.steps > 0)) errors.push(`budget.steps: value ${b.steps} must be > 0 when budget.kind is "steps"`);
  for (const f of c.data.extraTextFiles) {
    if (typeof f !== 'string') errors.push(`data.extraTextFiles: entry ${JSON.stringify(f)} is not a file path string`);
    else if (!fs.existsSync(f)) errors.push(`data.extraTextFiles: file "${f}" does not exist`);
  }
  return errors;
}

/** Reads a JSON config file with a clear error for a missing file or bad JSON. */
export function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${oneLine(e)}`);
  }
}

export function resolveConfig(...layers: unknown[]): Config {
  const conf = makeConvict();
  for (const layer of layers) {
    if (layer === undefined) continue;
    if (typeof layer !== 'object' || layer === null || Array.isArray(layer)) {
      throw new ConfigError(`config must be a JSON object, got ${JSON.stringify(layer)}`);
    }
    conf.load(layer as object);
  }
  try {
    conf.validate({ allowed: 'strict' });
  } catch (e) {
    // convict lists one problem per line; keep them, prefixed, so every field is named.
    // Our validators already say ", got <value>"; drop convict's duplicate ": value was <value>".
    const lines = (e as Error).message
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => (l.includes(', got ') ? l.replace(/: value was .*$/, '') : l));
    throw new ConfigError(`invalid config:\n  ${lines.join('\n  ')}`);
  }
  const config = conf.getProperties() as Config;
  const errors = crossFieldErrors(config);
  if (errors.length > 0) throw new ConfigError(`invalid config:\n  ${errors.join('\n  ')}`);
  return config;
}

/** defaults ← file ← overrides (e.g. from CLI flags). */
export function loadConfig(path?: string, overrides?: unknown): Config {
  return resolveConfig(path ? readConfigFile(path) : undefined, overrides);
}
