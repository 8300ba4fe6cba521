/** Real child processes of the ttc CLI for integration tests: output capture, waiting for lines, cleanup. */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';
import { scaled } from './time-scale.mjs';

export interface Proc {
  child: ChildProcess;
  lines: string[];
  /** First output line matching `pattern`; rejects after timeoutMs (what a quiet machine needs, default 120 s) × the load scale. */
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
      const limit = scaled(timeoutMs);
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
          reject(new Error(`timed out (${limit} ms) waiting for ${pattern}; last lines:\n${lines.slice(-15).join('\n')}`));
        }, limit);
        waiters.add(check);
        check();
      });
    },
  };
}

/** Live child processes of a process (not their own children); zombies count as gone. */
export function children(pid: number): number[] {
  return fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map(Number).filter((c) => {
    const st = procStat(c);
    return st !== undefined && st.state !== 'Z' && st.ppid === pid;
  });
}

/** A process's live children other than tsx's esbuild service (which the TypeScript loader may start in any process, at any time). */
export function childProcesses(pid: number): number[] {
  return children(pid).filter((c) => !/\/esbuild --service/.test(cmdline(c)));
}

/** Live descendants of a process (Linux /proc), children first; zombies count as gone. */
export function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const st = procStat(Number(e));
    if (st && st.state !== 'Z') parentOf.set(Number(e), st.ppid);
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [c, pp] of parentOf) if (pp === p) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

function procStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so read after the last ")"
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const [state, ppid] = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { state, ppid: Number(ppid) };
  } catch {
    return undefined;
  }
}

/** A process's command line, arguments joined by spaces ('' once it is gone). */
export function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return '';
  }
}

/** Whether a process still runs (exists and is not a zombie). */
export const running = (pid: number) => {
  const st = procStat(pid);
  return st !== undefined && st.state !== 'Z';
};

/** Waits until none of the pids runs; returns those still running after timeoutMs × the load scale. */
export async function waitGone(pids: number[], timeoutMs: number): Promise<number[]> {
  const until = Date.now() + scaled(timeoutMs);
  for (;;) {
    const left = pids.filter(running);
    if (left.length === 0 || Date.now() > until) return left;
    await new Promise((r) => setTimeout(r, 200));
  }
}
