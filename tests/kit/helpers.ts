/** Shared set-up for tests: a tiny real config, temp run directories, one dataset cache. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveConfig } from '../../core/config/load.ts';
import type { Config } from '../../core/config/schema.ts';
import { createRunDir } from '../../core/run/rundir.ts';
import { silentLogger } from '../../core/run/log.ts';
import type { Progress } from '../../core/run/progress.ts';
import { scaled } from './time-scale.mjs';

/** One cache for every test process: the tokenizer and packed data are built once. */
export const TEST_CACHE_DIR = path.join(os.tmpdir(), 'ttc-test-cache');

export function tempDir(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ttc-${name}-`));
}

export const TINY_MODEL = { layers: 1, hidden: 32, heads: 2, ffn: 64, seqLen: 32, vocab: 1000 };

export function tinyConfig(overrides: Record<string, unknown> = {}): Config {
  return resolveConfig(
    {
      outputDir: tempDir('runs'),
      cacheDir: TEST_CACHE_DIR,
      backend: 'cpu',
      model: TINY_MODEL,
      train: { batchSize: 4, evalEvery: 4, checkpointEvery: 4 },
      data: { maxValidationSequences: 16 },
      budget: { kind: 'steps', steps: 8 },
    },
    overrides,
  );
}

export const quietProgress: Progress = { update: () => {}, stop: () => {} };
export const quiet = { log: silentLogger, progress: quietProgress };

export function newRun(config: Config) {
  return createRunDir(config);
}

/** A tiny run config for the CLI in `dir`/cfg.json, its runs in `dir` unless `extra` says otherwise (top-level fields of `extra` replace the defaults). */
/** Short enough that a dead worker is noticed quickly, grown with the load so that a starved live one is not taken for dead. */
export const DIST_TIMEOUTS = { stepTimeoutSeconds: scaled(60), ringTimeoutSeconds: scaled(5) };

export function writeConfig(dir: string, extra: Record<string, unknown> = {}): string {
  const file = path.join(dir, 'cfg.json');
  fs.writeFileSync(
    file,
    JSON.stringify({
      outputDir: dir,
      cacheDir: TEST_CACHE_DIR,
      backend: 'cpu',
      threads: 1,
      seed: 11,
      model: TINY_MODEL,
      train: { batchSize: 4, evalEvery: 5, checkpointEvery: 5 },
      data: { maxValidationSequences: 16 },
      budget: { kind: 'steps', steps: 6 },
      dist: { hashEvery: 1, ...DIST_TIMEOUTS },
      ...extra,
    }),
  );
  return file;
}
