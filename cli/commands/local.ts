/**
 * `ttc local --workers N --config X`: the whole distributed system on this machine — one
 * coordinator process and N worker processes over real loopback sockets — with one combined
 * output stream. Ctrl-C (or any exit) stops them all.
 */
import crypto from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig, resolveConfig } from '../../core/config/load.ts';
import { openRunDir } from '../../core/run/rundir.ts';
import { childOfThisProcess } from '../../core/run/parent-watch.ts';
import { resolveSweepConfig } from '../../coordinator/sweep-config.ts';
import fs from 'node:fs';
import { overridesFromSets } from '../args.ts';
import { UsageError } from '../../core/errors.ts';

export const localUsage = `ttc local --workers N --config <file.json> [--set key=value ...]
ttc local --workers N --resume <runs/ID>
ttc local --workers N --evaluate <runs/SWEEP>     the compression + evaluation step of a sweep

Runs a coordinator and N worker processes on this machine (loopback sockets, a fresh random
secret unless TTC_SECRET is set) and prints their combined output. The coordinator waits for all N
before the first ring (dist.initialWorkers) and goes on with dist.minWorkers after a failure.
CPU threads are shared out: each worker gets max(1, cores / N) unless the config sets "threads".
Ctrl-C stops every process, and so does killing this one (they watch its pipe); the run can be
continued with \`ttc local --resume runs/<id>\` (or \`ttc coordinator --resume\` + workers).`;

const TTC = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'ttc.mjs');

function pipeLines(stream: NodeJS.ReadableStream, out: NodeJS.WriteStream, onLine?: (line: string) => void): void {
  readline.createInterface({ input: stream }).on('line', (line) => {
    onLine?.(line);
    out.write(`${line}\n`);
  });
}

export async function localCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { workers: { type: 'string', default: '2' }, config: { type: 'string' }, resume: { type: 'string' }, evaluate: { type: 'string' }, set: { type: 'string', multiple: true }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(localUsage);
    return 0;
  }
  if (!values.config && !values.resume && !values.evaluate) throw new UsageError(`--config, --resume or --evaluate is required\n\n${localUsage}`);
  const n = Number(values.workers);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new UsageError(`--workers: expected an integer 1..64, got "${values.workers}"`);
  const sets = values.set ?? [];
  // Refuse a bad config before spawning anything.
  const config = values.evaluate
    ? resolveSweepConfig(JSON.parse(fs.readFileSync(path.join(values.evaluate, 'sweep.json'), 'utf8'))).base
    : values.resume
      ? resolveConfig(openRunDir(values.resume).storedConfig, overridesFromSets(sets))
      : loadConfig(values.config, overridesFromSets(sets));
  // Wait for all N before the first ring; after a failure go on with the config's minimum (at most N).
  const extra = [`dist.initialWorkers=${n}`];
  if (config.dist.minWorkers > n) extra.push(`dist.minWorkers=${n}`);
  if (config.threads === 0) extra.push(`threads=${Math.max(1, Math.floor(os.availableParallelism() / n))}`);
  const env = { ...process.env, TTC_SECRET: process.env.TTC_SECRET ?? crypto.randomBytes(24).toString('base64') };
  delete (env as Record<string, string | undefined>).TTC_SECRET_FILE;

  const children: ChildProcess[] = [];
  const killAll = (signal: NodeJS.Signals = 'SIGTERM') => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill(signal);
  };
  const onSignal = () => {
    process.stderr.write('ttc local: stopping the coordinator and all workers\n');
    killAll();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => killAll('SIGKILL'));

  const source = values.resume ? ['--resume', values.resume] : ['--config', values.config!];
  // The evaluation step's coordinator is a job queue; its workers' threads travel in each job's config.
  const coordinatorArgs = values.evaluate ? ['evaluate', '--sweep', values.evaluate, '--port', '0', '--workers', String(n)] : ['coordinator', ...source, '--port', '0', ...[...sets, ...extra].flatMap((s) => ['--set', s])];
  const coordinator = spawn(process.execPath, [TTC, ...coordinatorArgs], childOfThisProcess(env, 'pipe'));
  children.push(coordinator);
  const url = await new Promise<string>((resolve, reject) => {
    pipeLines(coordinator.stdout!, process.stdout, (line) => {
      const m = line.match(/^TTC_COORDINATOR_URL=(\S+)/);
      if (m) resolve(m[1]);
    });
    pipeLines(coordinator.stderr!, process.stderr);
    coordinator.once('exit', (code) => reject(new Error(`the coordinator exited (code ${code}) before listening`)));
  });
  for (let i = 0; i < n; i++) {
    const w = spawn(process.execPath, [TTC, 'worker', '--coordinator', url, '--name', `worker-${i}`], childOfThisProcess(env, 'pipe'));
    children.push(w);
    pipeLines(w.stdout!, process.stdout);
    pipeLines(w.stderr!, process.stderr);
    w.on('exit', (code, signal) => {
      if (code !== 0) process.stderr.write(`ttc local: worker-${i} exited (${signal ?? `code ${code}`})\n`);
    });
  }
  const code = await new Promise<number>((resolve) => coordinator.once('exit', (c, s) => resolve(c ?? (s ? 128 : 1))));
  // Workers stop when the coordinator tells them; give them a moment, then make sure.
  await Promise.race([Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? null : new Promise((r) => c.once('exit', r))))), new Promise((r) => setTimeout(r, 5000))]);
  killAll();
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  return code;
}
