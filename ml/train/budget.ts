/**
 * Turns a budget (FLOPs, seconds or steps) into the number of optimizer steps the schedule is
 * fitted to. FLOPs are the total over all workers: flopsPerStep must already include every worker.
 */
import { codedError } from '../../core/errors.ts';
export type BudgetKind = 'flops' | 'seconds' | 'steps';

export interface BudgetConfig {
  kind: BudgetKind;
  flops: number;
  seconds: number;
  steps: number;
  calibrationSteps: number;
}

export const BudgetError = codedError('BudgetError', 'TTC_ERR_BUDGET');
export type BudgetError = InstanceType<typeof BudgetError>;

/** Steps for a FLOPs or steps budget: the largest count that does not exceed the budget. */
export function fixedStepBudget(b: BudgetConfig, flopsPerStep: number): number {
  if (b.kind === 'steps') return b.steps;
  if (b.kind === 'flops') {
    const steps = Math.floor(b.flops / flopsPerStep);
    if (steps < 1) {
      throw new BudgetError(`budget.flops = ${b.flops.toExponential(3)} is less than one training step (${flopsPerStep.toExponential(3)} FLOPs)`);
    }
    return steps;
  }
  throw new BudgetError('a seconds budget has no fixed step count; use estimateStepsForSeconds');
}

/**
 * For a seconds budget: the step count the schedule should end at, re-estimated before each
 * step from the mean step time so far. Once the time is spent the run ends where it is; while
 * some is left but less than a step, the next step is the last (LR 0), so the run is over its
 * budget by at most one step.
 */
export function estimateStepsForSeconds(budgetSeconds: number, stepsDone: number, secondsUsed: number, secondsPerStep: number): number {
  if (secondsUsed >= budgetSeconds) return stepsDone;
  return stepsDone + Math.max(1, Math.floor((budgetSeconds - secondsUsed) / secondsPerStep));
}
