/**
 * The compression step of a translation sweep (base.task "translation"): every member's final
 * weights compressed one-shot in each cell of compression/eval/translation.ts, their file size and
 * greedy BLEU measured, into <sweep>/translation-compression.json (members already there are kept:
 * rerunning continues), then the translation report (report/translation.ts). Unlike the MLM
 * evaluation step it runs in this process, not on workers: it is inference only (no gradients), on
 * the backend of the sweep's base config. Called by runSweep after the members, and by
 * `ttc evaluate --sweep` for a translation sweep.
 */
import fs from 'node:fs';
import path from 'node:path';
import { resolveConfig } from '../core/config/load.ts';
import type { Config } from '../core/config/schema.ts';
import { writeJsonAtomic } from '../core/fs.ts';
import type { Logger } from '../core/run/log.ts';
import { openRunDir } from '../core/run/rundir.ts';
import { evaluateTranslationCells, type TranslationCellResult } from '../compression/eval/translation.ts';
import { loadLatestCheckpoint } from '../ml/checkpoint/checkpoint.ts';
import { initRunBackend } from '../ml/loop/run-backend.ts';
import { TranslationTask, translationDataOf } from '../ml/tasks/translate.ts';
import { runLayout } from '../ml/train/controller.ts';
import type { TranslationData } from '../ml/data/translation.ts';
import { writeTranslationReport, type TranslationMember } from '../report/translation.ts';
import type { SweepConfig } from './sweep-config.ts';
import type { MemberResult } from './sweep.ts';
import { RunError } from './formation.ts';

export interface TranslationCompression {
  members: Array<{ sizeId: string; budgetId: string; seed?: number; cells: TranslationCellResult[] }>;
}

const FILE = 'translation-compression.json';

function readDone(sweepDir: string): TranslationCompression {
  const file = path.join(sweepDir, FILE);
  if (!fs.existsSync(file)) return { members: [] };
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as TranslationCompression;
  } catch {
    return { members: [] };
  }
}

/** Compresses and measures every member not yet in translation-compression.json; writes the translation report; returns its files. */
export async function compressTranslationSweep(sweepDir: string, sweep: SweepConfig, members: MemberResult[], log: Logger): Promise<string[]> {
  const done = readDone(sweepDir);
  const key = (m: { sizeId: string; budgetId: string; seed?: number }) => `${m.sizeId}|${m.budgetId}|${m.seed ?? ''}`;
  const have = new Set(done.members.map(key));
  let backendReady = false;
  let data: { key: string; data: TranslationData } | undefined;
  for (const m of members) {
    if (have.has(key(m))) continue;
    const config: Config = resolveConfig(openRunDir(m.runDir).storedConfig);
    if (!backendReady) {
      const b = await initRunBackend(config);
      log.info(`translation compression: backend ${b.name} (${b.detail}) in this process`);
      backendReady = true;
    }
    const ckpt = loadLatestCheckpoint(m.runDir, runLayout(config), (w) => log.warn(w));
    if (!ckpt) throw new RunError(`member ${path.basename(m.runDir)} has no checkpoint to compress`);
    const dkey = JSON.stringify([config.translation, config.model.vocab, config.model.seqLen, config.cacheDir]);
    if (data?.key !== dkey) data = { key: dkey, data: await translationDataOf(config, (x) => log.info(x)) };
    const task = new TranslationTask(config, data.data);
    const t0 = performance.now();
    const cells = await evaluateTranslationCells(task, ckpt.weights, undefined, (r) => log.info(`${path.basename(m.runDir)}: ${r.label}: ${(r.bytes / 1024).toFixed(0)} KiB, loss ${r.loss.toFixed(4)}, BLEU ${r.bleu.toFixed(2)}`));
    log.info(`${path.basename(m.runDir)}: ${cells.length} compression cells in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    done.members.push({ sizeId: m.sizeId, budgetId: m.budgetId, ...(m.seed !== undefined ? { seed: m.seed } : {}), cells });
    writeJsonAtomic(path.join(sweepDir, FILE), done);
  }
  const rows: TranslationMember[] = members.map((m) => {
    const size = sweep.sizes.find((s) => s.id === m.sizeId)!;
    return { ...m, layers: size.layers, hidden: size.hidden, cells: done.members.find((d) => key(d) === key(m))?.cells ?? [] };
  });
  return writeTranslationReport(sweepDir, rows);
}
