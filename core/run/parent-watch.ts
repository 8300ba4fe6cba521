/**
 * The processes ttc starts as parts of one job (`ttc sweep` → `ttc local` → a coordinator and its
 * workers) stop when the process that started them dies, even by SIGKILL, which no signal handler
 * sees. The parent holds the write end of the child's stdin pipe; the kernel closes it when the
 * parent dies, and the child reads end-of-file. Without this, a killed sweep left its member's
 * coordinator and workers training on, racing the resumed sweep for the same run directory.
 */
import fs from 'node:fs';
import type { SpawnOptions } from 'node:child_process';

const ENV = 'TTC_STOP_WITH_PARENT';

/** Spawn options for a ttc child process that must not outlive this one (stdin is the watched pipe). */
export function childOfThisProcess(env: NodeJS.ProcessEnv, stdout: 'pipe' | 'inherit'): SpawnOptions {
  return { env: { ...env, [ENV]: '1' }, stdio: ['pipe', stdout, stdout] };
}

/**
 * In a process started with childOfThisProcess: when the parent is gone, send ourselves SIGTERM, so
 * that the command's own handler stops it as Ctrl-C would (a checkpoint where it has one). Does
 * nothing in a process started any other way. The pipe does not keep the process alive.
 */
export function stopWhenParentDies(log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): void {
  if (process.env[ENV] !== '1') return;
  delete process.env[ENV]; // not inherited: a grandchild gets it only from its own parent
  let isPipe = false;
  try {
    const st = fs.fstatSync(0);
    isPipe = st.isFIFO() || st.isSocket(); // node's 'pipe' stdio is a socketpair
  } catch {
    return;
  }
  if (!isPipe) return;
  const stdin = process.stdin;
  stdin.on('data', () => {}); // nothing is ever sent: only the end matters
  stdin.once('end', () => {
    log(`ttc ${process.argv.slice(2, 3).join('')}: the process that started this one is gone; stopping`);
    process.kill(process.pid, 'SIGTERM');
  });
  stdin.resume();
  (stdin as unknown as { unref?: () => void }).unref?.();
}
