/** What `ttc sweep`, `ttc evaluate` and `ttc local --evaluate` print when a sweep's report is written. */
import path from 'node:path';

/** Prints the report's conclusion and where it is; returns the exit status (1 when jobs failed). */
export function printEvaluation(sweepDir: string, out: { conclusion: string[]; cells: number; failures: string[] }): number {
  for (const line of out.conclusion) console.log(line);
  console.log(`report: ${path.join(sweepDir, 'report.html')} (${out.cells} cells; also report.md, results.csv, plots/)`);
  if (out.failures.length === 0) return 0;
  console.error(`${out.failures.length} evaluation job(s) failed:\n  ${out.failures.join('\n  ')}\ncontinue with \`ttc sweep --resume ${sweepDir}\` (or rerun \`ttc evaluate --sweep ${sweepDir}\`) to retry them`);
  return 1;
}
