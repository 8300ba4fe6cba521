/**
 * What the webgpu tests on lavapipe (Mesa's CPU Vulkan driver) share: finding lavapipe's ICD file,
 * the environment that pins the Vulkan loader to it, the skip reason when it is missing, and the
 * child-process runner (`node --import tsx <script>`: Dawn is process-global, so each backend runs
 * in its own process). Each test file keeps its own kill timeout and passes it in.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { scaled } from './time-scale.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const ICD_DIRS = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'];

/** lavapipe's ICD file (`lvp_icd*.json`): the first by name in the first of ICD_DIRS that has one; undefined when none. */
export function findLavapipe(): string | undefined {
  for (const dir of ICD_DIRS) {
    try {
      const f = fs.readdirSync(dir).filter((n) => /^lvp_icd(\..+)?\.json$/.test(n)).sort()[0];
      if (f) return path.join(dir, f);
    } catch {
      // no such directory
    }
  }
  return undefined;
}

/** The reason in the titles of the tests registered as skipped without lavapipe. */
export const NO_LAVAPIPE = 'skipped: lavapipe not installed; .ci/run installs it';

/** The Vulkan loader sees only this ICD file (VK_DRIVER_FILES; VK_ICD_FILENAMES for older loaders). */
export const onlyIcd = (file: string): NodeJS.ProcessEnv => ({ ...process.env, VK_DRIVER_FILES: file, VK_ICD_FILENAMES: file });

export interface ChildRun {
  code: number | null;
  stdout: string;
  /** the last 4000 characters */
  stderr: string;
}

/** Runs `node --import tsx <script> ...args` in ROOT (script relative to ROOT or absolute); SIGKILL after timeoutMs × the load scale. */
export function runTsx(script: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', path.resolve(ROOT, script), ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += String(d)));
    p.stderr.on('data', (d) => (stderr = (stderr + String(d)).slice(-4000)));
    const timer = setTimeout(() => p.kill('SIGKILL'), scaled(timeoutMs));
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The child's last stdout line that starts with `{`, parsed; `{ error }` when there is none or it does not parse. */
export function resultLine(r: ChildRun): Record<string, unknown> {
  const line = r.stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  if (!line) return { error: `no result line (exit ${r.code})` };
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return { error: `unparsable result line: ${line}` };
  }
}

/** The last `lines` lines of a child's stderr, without tfjs's "artificially reduced" warnings. */
export const stderrTail = (stderr: string, lines: number): string =>
  stderr
    .split('\n')
    .filter((l) => !/artificially reduced/.test(l))
    .slice(-lines)
    .join('\n');

/** Why a child that reports a result line did not succeed: its `unavailable` or `error`, with the stderr tail on an error. */
export const whyChild = (o: { msg: Record<string, unknown>; stderr: string }): string =>
  String(o.msg.unavailable ?? o.msg.error ?? JSON.stringify(o.msg)) + (o.msg.error ? `\n${stderrTail(o.stderr, 8)}` : '');
