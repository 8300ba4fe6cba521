/**
 * `ttc train` refuses a model that cannot be trained here before it writes anything: real child
 * processes; each exits 1 with one line that names the fields, the estimate and the limit, and the
 * output directory stays empty (no run directory). Backend cpu: a step whose activations (attention
 * scores at seqLen 8192) need ~137 GiB of host memory; backend auto: a model of ~13 G parameters,
 * more than one typed array (its flat weights) holds on any machine.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { tempDir } from './kit/helpers.ts';
import { scaled } from './kit/time-scale.mjs';

const run = promisify(execFile);
const HUGE = { layers: 64, hidden: 4096, heads: 16, ffn: 16384, seqLen: 32, vocab: 1000 };
const LONG = { seqLen: 8192 };

const cases = [
  {
    backend: 'cpu',
    model: LONG,
    want: /^ttc train: model\.seqLen=8192: a training step of 1,978,144 parameters, batch 16×8192 needs ~\d+\.\d GiB of host memory \(parameters \+ optimizer state ~\d+ MiB, the step's tensors ~\d+\.\d GiB\), over 85% of the \d+\.\d GiB limit \((os\.totalmem\(\)|cgroup memory\.max|cgroup memory\.limit_in_bytes)\)$/,
  },
  {
    backend: 'auto',
    model: HUGE,
    want: /^ttc train: model\.hidden=4096, model\.layers=64, model\.ffn=16384: the model would have 12,909,335,528 parameters, over the 4,294,967,296 one typed array \(its flat weights\) can hold$/,
  },
];

for (const { backend, model, want } of cases) {
  test(`backend ${backend}: a model too big for this machine is refused up front with the fields that make it big, nothing written`, async (t) => {
    const out = tempDir('memory-refusal');
    const cfg = path.join(out, 'huge.json');
    const runs = path.join(out, 'runs');
    fs.writeFileSync(cfg, JSON.stringify({ outputDir: runs, cacheDir: path.join(out, 'cache'), backend, model, budget: { kind: 'steps', steps: 1 } }));
    const r = await run(process.execPath, ['bin/ttc.mjs', 'train', '--config', cfg], { timeout: scaled(120_000) }).then(
      (ok) => ({ code: 0, ...ok }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
    t.is(r.code, 1);
    const lines = r.stderr.trim().split('\n');
    t.is(lines.length, 1, r.stderr);
    t.regex(lines[0]!, want);
    t.deepEqual(fs.readdirSync(out), ['huge.json'], 'no run directory, no data cache');
  });
}
