/**
 * Loads and validates a run config: defaults ← JSON file ← overrides. Unknown fields,
 * wrong types and inconsistent combinations are refused with one message that names
 * every offending field, its value and what was expected.
 */
import fs from 'node:fs';
import { makeConvict, MAX_TYPED_ARRAY_LENGTH, type Config } from './schema.ts';
import { codedError, oneLine } from '../errors.ts';

export const ConfigError = codedError('ConfigError', 'TTC_ERR_CONFIG');
export type ConfigError = InstanceType<typeof ConfigError>;

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? (T[K] extends unknown[] ? T[K] : DeepPartial<T[K]>) : T[K] };

/**
 * Keys no config has and that reach Object.prototype through a plain object: `--set __proto__.x=1`
 * would pollute it, and JSON.parse makes "__proto__" an own key that convict would silently drop.
 */
const UNSAFE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Throws when the last key of `path` (e.g. "model.constructor") is one of UNSAFE_KEYS. */
export function refuseUnsafeKey(path: string, key: string, where: string): void {
  if (UNSAFE_KEYS.has(key)) throw new ConfigError(`${where}: key "${path}" is not allowed (__proto__, constructor and prototype are never config fields)`);
}

/** Refuses any key of UNSAFE_KEYS at any depth of a parsed config (a file, a submission, a sweep). */
export function refuseUnsafeKeys(value: unknown, where: string, path = ''): void {
  if (Array.isArray(value)) value.forEach((x, i) => refuseUnsafeKeys(x, where, `${path}[${i}]`));
  else if (typeof value === 'object' && value !== null) {
    for (const [k, x] of Object.entries(value)) {
      const at = path ? `${path}.${k}` : k;
      refuseUnsafeKey(at, k, where);
      refuseUnsafeKeys(x, where, at);
    }
  }
}

/**
 * Tensors a training step allocates whole, each in one typed array: whatever the machine's memory,
 * none may have more than MAX_TYPED_ARRAY_LENGTH elements. (Memory is checked by the commands that
 * start a run, ml/loop/memory-check.ts.)
 */
function tensorSizeErrors(c: Config): string[] {
  const { vocab, hidden, ffn, heads, seqLen } = c.model;
  const batch = c.train.batchSize;
  const tensors: Array<[fields: string, what: string, elements: number]> = [
    [`model.vocab=${vocab}, model.hidden=${hidden}`, 'the word embeddings (vocab × hidden)', vocab * hidden],
    [`model.hidden=${hidden}, model.ffn=${ffn}`, 'a feed-forward weight (hidden × ffn)', hidden * ffn],
    [`train.batchSize=${batch}, model.seqLen=${seqLen}, model.ffn=${ffn}, model.hidden=${hidden}`, "a layer's activations (batchSize × seqLen × max(hidden, ffn))", batch * seqLen * Math.max(hidden, ffn)],
    [`train.batchSize=${batch}, model.heads=${heads}, model.seqLen=${seqLen}`, 'the attention scores (batchSize × heads × seqLen²)', batch * heads * seqLen * seqLen],
  ];
  const max = MAX_TYPED_ARRAY_LENGTH.toLocaleString('en');
  return tensors.filter(([, , n]) => n > MAX_TYPED_ARRAY_LENGTH).map(([fields, what, n]) => `${fields}: ${what} would have ${n.toLocaleString('en')} elements, over the ${max} one typed array can hold`);
}

function crossFieldErrors(c: Config): string[] {
  const errors: string[] = [];
  if (c.model.hidden % c.model.heads !== 0) {
    errors.push(`model.hidden: value ${c.model.hidden} must be divisible by model.heads (${c.model.heads})`);
  }
  errors.push(...tensorSizeErrors(c));
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
  if (c.task === 'translation') {
    if (c.translation.pairs === '') errors.push('translation.pairs: task "translation" needs the parallel text (a `ttc data` directory or a TSV file)');
    else if (!fs.existsSync(c.translation.pairs)) errors.push(`translation.pairs: "${c.translation.pairs}" does not exist (make it with \`ttc data ddtp --out DIR\`)`);
    if (c.model.precision === 'mixed') errors.push('model.precision: "mixed" is not supported for task "translation" yet (fp32 only)');
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
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${oneLine(e)}`);
  }
  refuseUnsafeKeys(parsed, `config file ${path}`);
  return parsed;
}

/** One problem: one line; several: one line each. */
const invalidConfig = (problems: string[]) => new ConfigError(problems.length === 1 ? `invalid config: ${problems[0]}` : `invalid config:\n  ${problems.join('\n  ')}`);

export function resolveConfig(...layers: unknown[]): Config {
  const conf = makeConvict();
  for (const layer of layers) {
    if (layer === undefined) continue;
    if (typeof layer !== 'object' || layer === null || Array.isArray(layer)) {
      throw new ConfigError(`config must be a JSON object, got ${JSON.stringify(layer)}`);
    }
    refuseUnsafeKeys(layer, 'config');
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
    throw invalidConfig(lines);
  }
  const config = conf.getProperties() as Config;
  const errors = crossFieldErrors(config);
  if (errors.length > 0) throw invalidConfig(errors);
  return config;
}

/** defaults ← file ← overrides (e.g. from CLI flags). */
export function loadConfig(path?: string, overrides?: unknown): Config {
  return resolveConfig(path ? readConfigFile(path) : undefined, overrides);
}
