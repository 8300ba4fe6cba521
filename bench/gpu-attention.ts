/**
 * Fused webgpu attention (ml/kernels/webgpu/attention.ts) vs the tfjs-webgpu composite it replaces
 * (ml/kernels/fused.ts compositeAttention: transposes, matMul, scale, mask, softmax, matMul,
 * transpose back), forward and forward+backward, in one process on the same inputs: the two arms
 * alternate within every rep (order flipped each rep), medians reported, with the number of GPU
 * dispatches of one call of each (GPUComputePassEncoder.prototype.dispatchWorkgroups counted).
 *
 *   npm run bench:gpu-attention [-- --allow-software] [-- --shapes B2H4T128d32,B1H12T128d64] [-- --mask] [-- --reps N] [-- --json FILE]
 *
 * --allow-software  run on a software adapter (lavapipe; default shapes scaled for it)
 * --shapes          B<batch>H<heads>T<len>d<dh>, comma-separated
 * --mask            a key padding mask (each sequence's last quarter is padding)
 * Forward+backward is d/d(q, k, v) of sum(attention(q, k, v) ∘ dy); a step is timed to the read-back
 * of one scalar (a sum of the last output), the same in both arms. GFLOP/s count the usual matmul
 * FLOPs: 4·B·H·T²·dh forward, 3× that forward+backward.
 * Without a usable adapter it prints "no GPU adapter: …" and exits 0. Bundles as bench/gpu.ts does.
 */
// navigator.gpu first, then the webgpu backend: see ./lib/gpu-setup.ts (keep these two imports first)
import './lib/gpu-setup.ts';
import '@tensorflow/tfjs-backend-webgpu';

import fs from 'node:fs';

import { BackendError, initBackend } from '../ml/backend.ts';
import { attention, setFusedEnabled } from '../ml/kernels/fused.ts';
import { tf, type Tensor } from '../ml/tf.ts';
import { benchArgs } from './lib/args.ts';
import { countingDispatches } from './lib/dispatch-count.ts';
import { median } from './lib/median.ts';
import { printTable } from './lib/table.ts';

const { flag, opt } = benchArgs();
const software = flag('--allow-software');
const masked = flag('--mask');
const SOFTWARE_SHAPES = 'B2H4T128d32,B1H12T128d64';
const GPU_SHAPES = 'B32H12T128d64,B8H12T512d64,B32H4T128d64';
const shapes = (opt('--shapes') ?? (software ? SOFTWARE_SHAPES : GPU_SHAPES)).split(',').map((s) => {
  const m = /^B(\d+)H(\d+)T(\d+)d(\d+)$/.exec(s.trim());
  if (!m) throw new Error(`--shapes: "${s}" is not B<batch>H<heads>T<len>d<dh>`);
  const [B, H, T, dh] = m.slice(1).map(Number);
  return { name: s.trim(), B, H, T, dh };
});
const reps = Number(opt('--reps') ?? (software ? 5 : 20));
const WARMUP = 2;

type Arm = 'fused' | 'composite';
type Mode = 'fwd' | 'fwdbwd';

async function main(): Promise<void> {
  let info;
  try {
    info = await initBackend('webgpu', { threads: 1, allowSoftwareGpu: software });
  } catch (e) {
    if (e instanceof BackendError) {
      console.log(`no GPU adapter: ${e.message}`);
      return;
    }
    throw e;
  }
  console.log(`backend: ${info.detail}`);
  for (const l of info.log.filter((l) => /attention/.test(l))) console.log(l);
  if (!info.fused.includes('attention')) throw new Error('fused attention is not active on webgpu (self-test failed?)');

  const results: Record<string, unknown>[] = [];
  const rows: string[][] = [];
  for (const s of shapes) {
    const { B, H, T, dh } = s;
    const rnd = () => tf.randomNormal([B * T, H * dh], 0, 1, 'float32', 7);
    const [q, k, v, dy] = [rnd(), rnd(), rnd(), rnd()];
    const mask = masked ? tf.tidy(() => tf.cast(tf.less(tf.tile(tf.range(0, T, 1, 'int32').reshape([1, T]), [B, 1]), Math.ceil((T * 3) / 4)), 'float32')) : undefined;
    const f = (a: Tensor, b: Tensor, c: Tensor) => attention(a, b, c, B, H, mask);
    const fb = tf.grads((a: Tensor, b: Tensor, c: Tensor) => tf.sum(tf.mul(f(a, b, c), dy)));
    /** Records one call (counting its dispatches) and waits for it through one scalar read-back. */
    const once = async (arm: Arm, mode: Mode): Promise<{ ms: number; dispatches: number }> => {
      setFusedEnabled(arm === 'fused');
      const t0 = performance.now();
      const counter = countingDispatches();
      let outs: Tensor[];
      try {
        outs = tf.tidy(() => (mode === 'fwd' ? [f(q, k, v)] : fb([q, k, v])));
      } finally {
        counter.restore();
      }
      const sync = tf.sum(outs[outs.length - 1]);
      await sync.data();
      const ms = performance.now() - t0;
      tf.dispose([...outs, sync]);
      return { ms, dispatches: counter.get() };
    };
    const times: Record<string, number[]> = {};
    const dispatches: Record<string, number> = {};
    const order: [Arm, Mode][] = [['fused', 'fwd'], ['composite', 'fwd'], ['fused', 'fwdbwd'], ['composite', 'fwdbwd']];
    const tensorsBefore = tf.memory().numTensors;
    for (let r = -WARMUP; r < reps; r++) {
      for (const [arm, mode] of r % 2 ? [...order].reverse() : order) {
        const x = await once(arm, mode);
        const key = `${arm}/${mode}`;
        dispatches[key] = x.dispatches;
        if (r >= 0) (times[key] ??= []).push(x.ms);
      }
    }
    setFusedEnabled(true);
    const leak = tf.memory().numTensors - tensorsBefore;
    const med = (key: string) => median(times[key]);
    const flops = 4 * B * H * T * T * dh;
    const gf = (fl: number, ms: number) => (fl / (ms * 1e6)).toFixed(ms > 0 && fl / (ms * 1e6) < 10 ? 3 : 1);
    const r = {
      shape: s.name,
      masked,
      reps,
      ms: { fusedFwd: med('fused/fwd'), compositeFwd: med('composite/fwd'), fusedFwdBwd: med('fused/fwdbwd'), compositeFwdBwd: med('composite/fwdbwd') },
      speedup: { fwd: med('composite/fwd') / med('fused/fwd'), fwdBwd: med('composite/fwdbwd') / med('fused/fwdbwd') },
      dispatches,
      compositeScoreBytes: B * H * T * T * 4,
      tensorLeak: leak,
    };
    results.push(r);
    rows.push([
      s.name + (masked ? ' masked' : ''),
      `${r.ms.fusedFwd.toFixed(1)} / ${r.ms.compositeFwd.toFixed(1)}`,
      `${r.speedup.fwd.toFixed(2)}×`,
      `${r.ms.fusedFwdBwd.toFixed(1)} / ${r.ms.compositeFwdBwd.toFixed(1)}`,
      `${r.speedup.fwdBwd.toFixed(2)}×`,
      `${dispatches['fused/fwd']} / ${dispatches['composite/fwd']}`,
      `${dispatches['fused/fwdbwd']} / ${dispatches['composite/fwdbwd']}`,
      `${gf(flops, r.ms.fusedFwd)} / ${gf(3 * flops, r.ms.fusedFwdBwd)}`,
      String(leak),
    ]);
    tf.dispose([q, k, v, dy, ...(mask ? [mask] : [])]);
    console.log(`${s.name}: done`);
  }
  console.log(`\nmedians of ${reps} alternated reps after ${WARMUP} warm-up; fused / composite`);
  printTable(['shape', 'fwd ms', 'fwd speed-up', 'fwd+bwd ms', 'fwd+bwd speed-up', 'dispatches fwd', 'dispatches fwd+bwd', 'fused GFLOP/s fwd / fwd+bwd', 'tensor Δ'], rows);
  const json = opt('--json');
  if (json) fs.writeFileSync(json, JSON.stringify({ backend: info.detail, results }, null, 2));
}

await main();
process.exit(0); // a Dawn instance keeps the event loop alive
