// How much longer than on a quiet machine the tests' waits may take, shared by tests/run.mjs
// and the kit (tests/kit/procs.ts, cluster.ts): on a loaded machine a healthy child process is
// slow, not dead, so every event wait is multiplied by this factor.
// TTC_TEST_TIME_SCALE (a positive number) wins; tests/run.mjs sets it for each test file from the
// load at that file's start. Otherwise: the 1-minute load average per CPU, ×1 up to 1 and capped
// at ×6 (a load of 12 on 2 cores gives the most).
import os from 'node:os';

export const MAX_TIME_SCALE = 6;

export function timeScale() {
  const fromEnv = Number(process.env.TTC_TEST_TIME_SCALE);
  if (Number.isFinite(fromEnv) && fromEnv > 0) return fromEnv;
  const perCpu = os.loadavg()[0] / Math.max(1, os.cpus().length);
  return Math.min(MAX_TIME_SCALE, Math.max(1, perCpu));
}

// Read once per process: the factor at this test file's start.
const SCALE = timeScale();

/** `n` (a limit in ms, or in s, that suffices on a quiet machine) times the load factor, rounded. */
export function scaled(n) {
  return Math.round(n * SCALE);
}
