/**
 * A seconds budget re-estimates its step count before each step from the measured step time. A
 * step slower than the estimate used to end the run mid-schedule (its last LR above 0); the run
 * now closes with one step at LR 0, overshooting by at most that step. Step times are given, not
 * measured, so this holds on any machine.
 */
import test from 'ava';
import path from 'node:path';
import { MetricsWriter } from '../../core/run/metrics.ts';
import { RunController } from '../../ml/train/controller.ts';
import { quietProgress, tempDir, tinyConfig } from '../kit/helpers.ts';

/** Runs the controller with the given step times (seconds; the last one repeats); returns each planned step's LR, the seconds used and how many steps started after the budget ran out. */
function runWith(budgetSeconds: number, calibrated: number, stepSeconds: number[]): { lrs: number[]; secondsUsed: number; startedAfterBudget: number } {
  const config = tinyConfig({ budget: { kind: 'seconds', seconds: budgetSeconds } });
  const ctl = new RunController(config, 1, new MetricsWriter(path.join(tempDir('seconds-budget'), 'metrics.jsonl')), quietProgress);
  ctl.calibrate(calibrated, 0, 0);
  const lrs: number[] = [];
  let startedAfterBudget = 0;
  for (let p = ctl.next(); p; p = ctl.next()) {
    lrs.push(p.lr);
    if (ctl.state.secondsUsed >= budgetSeconds) startedAfterBudget++;
    const seconds = stepSeconds[Math.min(lrs.length - 1, stepSeconds.length - 1)]!;
    ctl.completeStep(p, { loss: 1, seconds, nextPosition: p.dataPosition });
    if (lrs.length > 1000) throw new Error('the run does not end');
  }
  return { lrs, secondsUsed: ctl.state.secondsUsed, startedAfterBudget };
}

test('seconds budget: steps as fast as calibrated end exactly at the budget with LR 0', (t) => {
  const { lrs, secondsUsed } = runWith(10, 1, [1]);
  t.is(lrs.length, 10);
  t.is(lrs.at(-1), 0);
  t.is(secondsUsed, 10);
});

test('seconds budget: a step that runs past the budget before the planned last step is followed by one closing step at LR 0', (t) => {
  // 1 s per step as calibrated, then a 6 s step: the 10 s budget runs out during step 6 while the
  // plan still had steps to go
  const { lrs, secondsUsed, startedAfterBudget } = runWith(10, 1, [1, 1, 1, 1, 1, 6, 1]);
  t.is(lrs.at(-1), 0, `LRs ${lrs.join(', ')}`);
  t.true(lrs.slice(0, -1).every((lr) => lr > 0), 'only the closing step is at LR 0');
  t.is(startedAfterBudget, 1, 'one step started after the budget ran out');
  t.is(secondsUsed, 12);
});

test('seconds budget: irregular step times always end at LR 0, at most one step started after the budget ran out', (t) => {
  for (let k = 0; k < 40; k++) {
    const times = Array.from({ length: 64 }, (_, i) => 0.5 + ((k * 7 + i * 13) % 11) / 4);
    const { lrs, startedAfterBudget } = runWith(15, 1, times);
    t.is(lrs.at(-1), 0, `pattern ${k}: LRs ${lrs.join(', ')}`);
    t.true(startedAfterBudget <= 1, `pattern ${k}: ${startedAfterBudget} steps started after the budget ran out`);
  }
});
