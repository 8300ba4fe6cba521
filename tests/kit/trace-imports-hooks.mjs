// Module resolution hooks of trace-imports.mjs (they run off the main thread).
import fs from 'node:fs';

let file;

export async function initialize(data) {
  file = data.file;
}

export async function resolve(specifier, context, nextResolve) {
  const r = await nextResolve(specifier, context);
  fs.appendFileSync(file, `${r.url}\n`);
  return r;
}
