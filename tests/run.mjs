// Runs the ava suite with the TAP reporter, passes its output through, and ends with the plain
// line "N passed, N failed" that CI reads (ava's own summary is not read). Exit code = ava's.
// `--unit`: only tests/unit/ (no child processes, under a minute: `npm run test:unit`). A test
// registered as skipped (something this machine lacks) is counted as skipped, never as passed.
import { spawn } from 'node:child_process';
import readline from 'node:readline';

const rest = process.argv.slice(2);
const unit = rest.includes('--unit');
const args = ['ava', '--tap', ...(unit ? ['tests/unit/**/*.test.ts'] : []), ...rest.filter((a) => a !== '--unit')];
const child = spawn('npx', args, { stdio: ['ignore', 'pipe', 'inherit'] });
let passed = 0;
let failed = 0;
let skipped = 0;
readline.createInterface({ input: child.stdout }).on('line', (line) => {
  process.stdout.write(`${line}\n`);
  if (/^ok \d+/.test(line)) {
    if (/# SKIP/i.test(line)) skipped += 1;
    else passed += 1;
  } else if (/^not ok \d+/.test(line)) {
    if (/# TODO/i.test(line)) skipped += 1;
    else failed += 1;
  }
});
child.on('close', (code) => {
  const exit = code ?? 1;
  // A crashed test file (no "not ok" line) still fails the run.
  if (exit !== 0 && failed === 0) failed = 1;
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(exit);
});
