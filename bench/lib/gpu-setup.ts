/**
 * Sets navigator.gpu from Dawn (the `webgpu` package) before anything imports the tfjs webgpu
 * backend: that backend registers itself at import time only if navigator.gpu exists. Import this
 * module FIRST in an entry point that imports '@tensorflow/tfjs-backend-webgpu' itself, which is
 * what a bundle for an offline GPU host needs (docs/gpu.md). ml/backend.ts reuses the instance.
 * DAWN_FLAGS (space-separated Dawn toggles, e.g. "enable-dawn-features=allow_unsafe_apis") are
 * passed to Dawn. If `webgpu` does not load here, nothing is set and ml/backend.ts reports why.
 */
import { createRequire } from 'node:module';

const req = createRequire(import.meta.url);
try {
  const dawn = req('webgpu') as { create: (flags: string[]) => unknown; globals: Record<string, unknown> };
  Object.assign(globalThis, dawn.globals);
  const nav = ((globalThis as { navigator?: object }).navigator ??= {}) as { gpu?: unknown };
  nav.gpu ??= dawn.create((process.env.DAWN_FLAGS ?? '').split(' ').filter(Boolean));
} catch {
  // ml/backend.ts tries again and logs the reason ("webgpu: Dawn not usable (...)")
}
