/**
 * Learning rate: linear warm-up, then linear decay that reaches exactly 0 at the last step the
 * budget allows (steps are 0-based; the last one is totalSteps − 1).
 */
export function warmupSteps(totalSteps: number, warmupFraction: number): number {
  return Math.min(totalSteps - 1, Math.max(0, Math.round(totalSteps * warmupFraction)));
}

export function learningRate(step: number, totalSteps: number, warmup: number, peak: number): number {
  const last = totalSteps - 1;
  if (step >= last) return 0;
  if (step < warmup) return (peak * (step + 1)) / warmup;
  return (peak * (last - step)) / Math.max(1, last - warmup);
}
