/**
 * Which files of a run directory are its results, for `ttc report`: the report, its tables and
 * plots, summaries, metrics, configs and logs — never checkpoints or model weights (those stay on
 * the runs volume; `ttc export` turns them into Hugging Face files there).
 */
import fs from 'node:fs';
import path from 'node:path';
import { isTempName } from '../core/fs.ts';

const RESULT_FILE = /\.(html|md|csv|json|jsonl|log|svg)$/;
/** sub-directories whose files are results; members/<id>/ holds each sweep member's run (without its checkpoints/) */
const RESULT_DIRS = new Set(['plots', 'members']);

/** Result files under `dir`, as paths relative to it ("report.html", "plots/isoflop.svg", "members/L1-d64_2e11/summary.json"). */
export function resultFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(path.join(dir, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const name = rel ? `${rel}/${e.name}` : e.name;
      if (e.name.startsWith('.') || isTempName(e.name)) continue;
      if (e.isFile() && RESULT_FILE.test(e.name)) out.push(name);
      else if (e.isDirectory() && depth < 2 && (depth > 0 ? rel.startsWith('members') && e.name !== 'checkpoints' : RESULT_DIRS.has(e.name))) walk(name, depth + 1);
    }
  };
  walk('', 0);
  return out;
}
