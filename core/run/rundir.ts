/** A run's directory: runs/<id>/ with the resolved config, metrics, checkpoints, log and summary. */
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/schema.ts';
import { oneLine, RunDirError } from '../errors.ts';
import { isTempName, writeJsonAtomic } from '../fs.ts';

export interface RunDir {
  id: string;
  dir: string;
  configFile: string;
  metricsFile: string;
  logFile: string;
  summaryFile: string;
  /** a distributed run's worker failures so far, kept across coordinator restarts (coordinator/pretrain.ts) */
  failuresFile: string;
}

export function runDirFor(dir: string): RunDir {
  return {
    id: path.basename(dir),
    dir,
    configFile: path.join(dir, 'config.json'),
    metricsFile: path.join(dir, 'metrics.jsonl'),
    logFile: path.join(dir, 'train.log'),
    summaryFile: path.join(dir, 'summary.json'),
    failuresFile: path.join(dir, 'failures.json'),
  };
}

/** UTC time as YYYYMMDD-HHMMSS: the suffix of run and sweep ids. */
export function timestamp(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
}

/** Creates a new run directory and writes the resolved config into it. */
export function createRunDir(config: Config, configPath?: string): RunDir {
  const base = config.runId || `${configPath ? path.basename(configPath, '.json') : 'run'}-${timestamp()}`;
  let dir = path.join(config.outputDir, base);
  for (let i = 2; fs.existsSync(dir); i++) {
    if (config.runId) throw new RunDirError(`run directory ${dir} already exists: resume it with \`ttc train --resume ${dir}\` or choose another runId`);
    dir = path.join(config.outputDir, `${base}-${i}`);
  }
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new RunDirError(`cannot create the run directory ${dir} (outputDir ${config.outputDir}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const run = runDirFor(dir);
  writeJsonAtomic(run.configFile, { ...config, runId: run.id });
  return run;
}

/**
 * A run directory whose start was killed before its config.json landed (createRunDir writes it
 * first, atomically): empty, or holding only that write's temporary. Removes it so the run can
 * start afresh; a directory without config.json holding anything else is refused, not deleted.
 */
export function removeUnstartedRunDir(dir: string): void {
  if (!fs.existsSync(dir) || fs.existsSync(runDirFor(dir).configFile)) return;
  const others = fs.readdirSync(dir).filter((e) => !isTempName(e, 'config.json'));
  if (others.length > 0) throw new RunDirError(`${dir} has no config.json but holds ${others.slice(0, 3).join(', ')}${others.length > 3 ? ', …' : ''}: not a run this process started; move it away`);
  fs.rmSync(dir, { recursive: true, force: true });
}

/** An existing run directory and the config stored in it. */
export function openRunDir(dir: string): { run: RunDir; storedConfig: unknown } {
  const run = runDirFor(dir);
  if (!fs.existsSync(run.configFile)) throw new RunDirError(`${dir} is not a ttc run directory (no config.json)`);
  let text: string;
  try {
    text = fs.readFileSync(run.configFile, 'utf8');
  } catch (e) {
    throw new RunDirError(`cannot read ${run.configFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return { run, storedConfig: JSON.parse(text) };
  } catch (e) {
    throw new RunDirError(`${run.configFile} is not valid JSON (${oneLine(e)}): not a usable ttc run directory`);
  }
}
