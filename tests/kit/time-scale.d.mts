// Types of tests/kit/time-scale.mjs (plain JavaScript, so that tests/run.mjs can import it too).
export const MAX_TIME_SCALE: number;
export function timeScale(): number;
export function scaled(n: number): number;
