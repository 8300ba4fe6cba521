/**
 * One MLM training step on one backend in its own process (see ./one-step.ts):
 *
 *   node --import tsx bench/lib/one-step-child.ts '<json OneStepArgs>' <result file>
 *
 * Used by tests/webgpu.test.ts; bench/gpu.ts does the same with `--one-step` (so that a bundle of
 * it can spawn itself on a GPU host).
 */
import { oneStepMain } from '../../tests/kit/one-step.ts';

// exit explicitly: a Dawn instance keeps the event loop alive
process.exit(await oneStepMain(process.argv.slice(2)));
