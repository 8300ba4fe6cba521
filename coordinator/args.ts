/** Helpers for CLI flags: `--set a.b=value` overrides into a nested object. */
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
    if (eq <= 0) throw new Error(`--set expects key=value (e.g. --set model.layers=4), got "${s}"`);
    const keys = s.slice(0, eq).split('.');
    let node = out;
    for (const k of keys.slice(0, -1)) node = (node[k] ??= {}) as Record<string, unknown>;
    node[keys[keys.length - 1]] = parseValue(s.slice(eq + 1));
  }
  return out;
}
