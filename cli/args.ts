/**
 * Flag handling shared by the commands: node's parseArgs with its errors turned into usage errors,
 * `--set a.b=value` overrides, the `--config` / `--resume` run sources, ports and worker counts.
 */
import fs from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { loadConfig, refuseUnsafeKey, resolveConfig } from '../core/config/load.ts';
import { RUN_ID, RUN_ID_RULE, type Config } from '../core/config/schema.ts';
import { UsageError } from '../core/errors.ts';
import { createRunDir, openRunDir, type RunDir } from '../core/run/rundir.ts';

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * parseArgs (strict: an unknown flag or a missing value is a usage error, with the command's usage);
 * a flag that takes one value given twice is one too (parseArgs would keep the last silently).
 */
export function parseFlags<O extends Options>(argv: string[], options: O, usage: string) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: false, tokens: true });
  } catch (e) {
    if (String((e as { code?: unknown }).code ?? '').startsWith('ERR_PARSE_ARGS')) throw new UsageError(`${(e as Error).message}\n\n${usage}`);
    throw e;
  }
  const seen = new Set<string>();
  for (const t of parsed.tokens) {
    if (t.kind !== 'option' || options[t.name]?.multiple) continue;
    if (seen.has(t.name)) throw new UsageError(`--${t.name} is given more than once\n\n${usage}`);
    seen.add(t.name);
  }
  return parsed.values;
}

export function parseValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw; // bare strings: --set backend=cpu
  }
}

export function overridesFromSets(sets: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of sets) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new UsageError(`--set expects key=value (e.g. --set model.layers=4), got "${s}"`);
    const keys = s.slice(0, eq).split('.');
    // before any assignment: `node["__proto__"] ??= {}` would hand back Object.prototype
    keys.forEach((k, i) => refuseUnsafeKey(keys.slice(0, i + 1).join('.'), k, `--set ${s}`));
    let node = out;
    for (const k of keys.slice(0, -1)) node = (node[k] ??= {}) as Record<string, unknown>;
    node[keys[keys.length - 1]!] = parseValue(s.slice(eq + 1));
  }
  return out;
}

/**
 * `--config FILE` (a new run directory) or `--resume DIR` (its stored config), with `--set`
 * overrides (and `extra` ones on top), in two halves: the validated config now, the run directory
 * when `runDir()` is called (a new one is created then), so a command can refuse a config (e.g. a
 * model too big for this machine) with nothing written.
 */
export function runConfig(values: { config?: string; resume?: string; set?: string[] }, usage: string, extra: (c: Config) => Record<string, unknown> = () => ({})): { config: Config; runDir: () => RunDir } {
  const overrides = overridesFromSets(values.set ?? []);
  if (values.resume) {
    const opened = openRunDir(values.resume);
    const stored = resolveConfig(opened.storedConfig, overrides);
    return { config: resolveConfig(stored, extra(stored)), runDir: () => opened.run };
  }
  if (!values.config) throw new UsageError(`--config or --resume is required\n\n${usage}`);
  const loaded = loadConfig(values.config, overrides);
  // Validated (with every override) before the run directory is created.
  const config = resolveConfig(loaded, extra(loaded));
  const file = values.config;
  return { config, runDir: () => createRunDir(config, file) };
}

/** A flag that names a run of a run server (`--run ID`, `--name N`; not a directory path): the run id pattern of the config's runId. */
export function checkRunIdFlag(flag: string, raw: string | undefined): void {
  if (raw !== undefined && !RUN_ID.test(raw)) throw new UsageError(`${flag}: expected a run id (${RUN_ID_RULE}), got "${raw}"`);
}

/** An output directory flag (--out, --output-dir, --report-dir), refused before any work when the path is there but is no directory. */
export function outputDirFlag(flag: string, dir: string): string {
  try {
    if (fs.statSync(dir).isDirectory()) return dir;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return dir; // created when written
    throw new UsageError(`${flag} ${dir}: not usable as a directory (${code ?? (e as Error).message})`);
  }
  throw new UsageError(`${flag} ${dir}: exists and is not a directory`);
}

export function parsePort(raw: string | undefined, flag = '--port'): number {
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`${flag}: expected 0..65535, got "${raw}"`);
  return port;
}

/** A duration flag in seconds (> 0). */
export function parseSeconds(flag: string, raw: string | undefined): number {
  const s = Number(raw);
  if (!(s > 0) || !Number.isFinite(s)) throw new UsageError(`${flag}: expected seconds > 0, got "${raw}"`);
  return s;
}

export function parseWorkers(raw: string | undefined): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new UsageError(`--workers: expected an integer 1..64, got "${raw}"`);
  return n;
}
