/** Builds a sweep's pretraining results in this process (fast), for tests of the evaluation step. */
import fs from 'node:fs';
import path from 'node:path';
import type { SweepConfig } from '../../coordinator/sweep-config.ts';
import { memberConfig, memberSeeds } from '../../coordinator/sweep-config.ts';
import { createRunDir } from '../../core/run/rundir.ts';
import { trainRun } from '../../ml/loop/run.ts';
import { readMetrics } from '../../core/run/metrics.ts';
import { nonEmbeddingParameterCount, parameterCount } from '../../ml/model/spec.ts';
import { writePretrainingResults, type MemberResult } from '../../coordinator/sweep.ts';
import { quiet } from './helpers.ts';

export async function runSweepMembersInProcess(sweep: SweepConfig, sweepDir: string): Promise<MemberResult[]> {
  const membersDir = path.join(sweepDir, 'members');
  fs.mkdirSync(membersDir, { recursive: true });
  fs.writeFileSync(path.join(sweepDir, 'sweep.json'), JSON.stringify(sweep));
  const results: MemberResult[] = [];
  for (const budget of sweep.budgets) {
    for (const size of sweep.sizes) {
      for (const seed of memberSeeds(sweep)) {
      const config = memberConfig(sweep, size, budget, membersDir, seed);
      const run = createRunDir(config);
      const s = await trainRun(config, run, quiet);
      results.push({
        sizeId: size.id, budgetId: budget.id, ...(seed !== undefined ? { seed } : {}), runDir: run.dir, parameters: parameterCount(config.model), nonEmbeddingParameters: nonEmbeddingParameterCount(config.model),
        steps: s.steps, flops: s.flopsUsed, seconds: s.secondsUsed, valLoss: s.finalValLoss,
        curve: readMetrics(run.metricsFile).filter((r) => r.valLoss !== undefined).map((r) => ({ step: r.step, flops: r.flops, seconds: r.seconds, valLoss: r.valLoss! })),
      });
      }
    }
  }
  writePretrainingResults(sweepDir, sweep, results);
  return results;
}
