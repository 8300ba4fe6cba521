/** `ttc compress`: a pretrained checkpoint or a fine-tuned classifier → a compressed model file (the sweep's one-shot methods). */
import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../../core/errors.ts';
import { encodeCompressed, globalMagnitudeMask } from '../../compression/index.ts';
import { cellLabel, checkCellSpec, compressSpecOf, prunes, type CellSpec } from '../../compression/grid.ts';
import { loadCheckpoint, readCheckpointDims } from '../../ml/checkpoint/checkpoint.ts';
import { paramLayout } from '../../ml/model/spec.ts';
import { writeFileAtomic } from '../../core/fs.ts';
import { parseFlags } from '../args.ts';
import { checkpointOf, readFinetuned } from '../model-files.ts';

export const usage = `ttc compress (--run runs/<id> | --checkpoint <checkpoint dir>) [--finetuned <file>] --method M [level flags] --out <file>

Compresses a model as one cell of the sweep's grid and writes the compressed file (the format
ttc export --compressed and the evaluation read). One-shot methods only: iterative pruning
fine-tunes between rounds, which the sweep's evaluation does (ttc evaluate).
  --run DIR            the run's latest valid checkpoint (the pretrained MLM), or with --finetuned
                       the sweep member the classifier was fine-tuned from
  --checkpoint DIR     this checkpoint directory instead
  --finetuned FILE     compress this fine-tuned classifier (runs/<sweep>/finetuned/<member>.safetensors)
  --method M           quant | prune-oneshot | prune+quant
  --bits N             quant, prune+quant: bits per weight, 2..8
  --granularity G      quant, prune+quant: channel (default) | tensor
  --sparsity S         prune-oneshot, prune+quant: fraction of the weights set to 0, in [0, 1)
  --embeddings         compress the embedding tables too
  --out FILE           the compressed model file to write`;

export async function run(argv: string[]): Promise<number> {
  const values = parseFlags(argv, {
    run: { type: 'string' }, checkpoint: { type: 'string' }, finetuned: { type: 'string' }, method: { type: 'string' },
    bits: { type: 'string' }, granularity: { type: 'string', default: 'channel' }, sparsity: { type: 'string' },
    embeddings: { type: 'boolean', default: false }, out: { type: 'string' },
  }, usage);
  if (!values.out || !values.method || (!values.run && !values.checkpoint)) throw new UsageError(`--out, --method and one of --run / --checkpoint are required\n\n${usage}`);
  if (!['quant', 'prune-oneshot', 'prune+quant'].includes(values.method)) {
    throw new UsageError(`--method: expected quant, prune-oneshot or prune+quant, got "${values.method}"${values.method === 'prune-iterative' ? ' (iterative pruning fine-tunes between rounds: run it in a sweep)' : ''}`);
  }
  if (fs.existsSync(values.out) && fs.statSync(values.out).isDirectory()) throw new UsageError(`--out ${values.out}: is a directory; name the file to write`);
  const num = (flag: string, raw: string | undefined): number | undefined => {
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag}: expected a number, got "${raw}"`);
    return n;
  };
  const spec = {
    method: values.method, embeddings: values.embeddings, bits: num('--bits', values.bits),
    granularity: values.granularity, sparsity: num('--sparsity', values.sparsity),
  } as CellSpec;
  checkCellSpec(spec); // names the missing or out-of-range level in one line

  const dir = checkpointOf(values);
  const dims = readCheckpointDims(dir);
  const { layout, weights } = values.finetuned ? readFinetuned(values.finetuned, dims) : { layout: paramLayout(dims), weights: loadCheckpoint(dir, paramLayout(dims)).weights };
  const mask = prunes(spec.method) ? globalMagnitudeMask(weights, layout, spec.sparsity!, { embeddings: spec.embeddings }) : undefined;
  const source = path.resolve(values.finetuned ?? dir);
  const file = encodeCompressed(weights, layout, compressSpecOf(spec, mask, { source, cell: cellLabel(spec) }));
  fs.mkdirSync(path.dirname(path.resolve(values.out)), { recursive: true });
  writeFileAtomic(values.out, file);
  console.log(`compressed ${source} (${cellLabel(spec)}): ${(weights.length * 4).toLocaleString('en-US')} → ${file.length.toLocaleString('en-US')} bytes (${(weights.length * 4 / file.length).toFixed(2)}×) → ${values.out}`);
  return 0;
}
