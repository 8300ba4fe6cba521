/** Real child processes of the ttc CLI for integration tests: output capture, waiting for lines, cleanup. */
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';

export interface Proc {
  child: ChildProcess;
  lines: string[];
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<number>;
  kill(signal?: NodeJS.Signals): void;
}

const all = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of all) c.kill('SIGKILL');
});

export function spawnTtc(args: string[], env: Record<string, string | undefined> = {}): Proc {
  return spawnTtcWith(args, env);
}

/** Like spawnTtc; variables set to undefined are removed from the child's environment. */
export function spawnTtcWith(args: string[], env: Record<string, string | undefined>): Proc {
  const merged: Record<string, string | undefined> = { ...process.env, ...env };
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  const child = spawn(process.execPath, ['bin/ttc.mjs', ...args], { env: merged as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  all.add(child);
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  const onLine = (l: string) => {
    lines.push(l);
    for (const w of waiters) w();
  };
  readline.createInterface({ input: child.stdout! }).on('line', onLine);
  readline.createInterface({ input: child.stderr! }).on('line', onLine);
  const exited = new Promise<number>((resolve) =>
    child.once('exit', (code, signal) => {
      all.delete(child);
      resolve(code ?? (signal ? 128 : 1));
    }),
  );
  return {
    child,
    lines,
    exited,
    kill: (signal = 'SIGKILL') => child.kill(signal),
    waitFor(pattern, timeoutMs = 120_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          for (const l of lines) {
            const m = l.match(pattern);
            if (m) {
              waiters.delete(check);
              clearTimeout(timer);
              resolve(m);
              return;
            }
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${pattern}; last lines:\n${lines.slice(-15).join('\n')}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
}
