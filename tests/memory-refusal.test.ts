/**
 * `ttc train` refuses a model that no backend here can hold before it writes anything: a real
 * child process, a model of ~13 G parameters; it exits 1 with one line that names the estimate and
 * the limit, and the output directory stays empty (no run directory).
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { tempDir, TEST_CACHE_DIR } from './kit/helpers.ts';
import { scaled } from './kit/time-scale.mjs';

const run = promisify(execFile);
const HUGE = { layers: 64, hidden: 4096, heads: 16, ffn: 16384, seqLen: 32, vocab: 1000 };

for (const backend of ['cpu', 'auto']) {
  test(`backend ${backend}: a model too big for this machine is refused up front, nothing written`, async (t) => {
    const out = tempDir('memory-refusal');
    const cfg = path.join(out, 'huge.json');
    const runs = path.join(out, 'runs');
    fs.writeFileSync(cfg, JSON.stringify({ outputDir: runs, cacheDir: TEST_CACHE_DIR, backend, model: HUGE, budget: { kind: 'steps', steps: 1 } }));
    const r = await run(process.execPath, ['bin/ttc.mjs', 'train', '--config', cfg], { timeout: scaled(120_000) }).then(
      (ok) => ({ code: 0, ...ok }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
    t.is(r.code, 1);
    const lines = r.stderr.trim().split('\n').filter((l) => !/^Warning: max/.test(l)); // Dawn's adapter notices (auto probes webgpu)
    t.is(lines.length, 1, r.stderr);
    const want = backend === 'cpu' ? /^ttc train: backend "cpu" cannot hold this model/ : /^ttc train: no (available )?backend can hold this model/;
    t.regex(lines[0]!, want);
    t.regex(lines[0]!, /12,909,335,528 parameters, batch 16×32\).*needs ~\d+\.\d GiB of host memory, over 85% of the \d+\.\d GiB limit \((os\.totalmem\(\)|cgroup memory\.max)\)$/);
    t.false(fs.existsSync(runs), 'no run directory');
  });
}
