/** Helpers for CLI flags: `--set a.b=value` overrides, and `--config` / `--resume` run sources. */
import { loadConfig, resolveConfig } from '../core/config/load.ts';
import type { Config } from '../core/config/schema.ts';
import { createRunDir, openRunDir, type RunDir } from '../core/run/rundir.ts';
import { UsageError } from '../core/errors.ts';

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
    let node = out;
    for (const k of keys.slice(0, -1)) node = (node[k] ??= {}) as Record<string, unknown>;
    node[keys[keys.length - 1]] = parseValue(s.slice(eq + 1));
  }
  return out;
}

/** `--config FILE` (a new run directory) or `--resume DIR` (its stored config), with `--set` overrides. */
export function configAndRunDir(values: { config?: string; resume?: string; set?: string[] }, usage: string): { config: Config; run: RunDir } {
  const overrides = overridesFromSets(values.set ?? []);
  if (values.resume) {
    const opened = openRunDir(values.resume);
    return { config: resolveConfig(opened.storedConfig, overrides), run: opened.run };
  }
  if (!values.config) throw new UsageError(`--config or --resume is required\n\n${usage}`);
  const config = loadConfig(values.config, overrides);
  return { config, run: createRunDir(config, values.config) };
}
