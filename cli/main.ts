/** The `ttc` command line: one sub-command per job. */
import { pathToFileURL } from 'node:url';
import { trainCommand, trainUsage } from './commands/train.ts';
import { localCommand, localUsage } from './commands/local.ts';
import { sweepCommand, sweepUsage } from './commands/sweep.ts';
import { exportCommand, exportUsage } from './commands/export.ts';
import { evaluateCommand, evaluateUsage } from './commands/evaluate.ts';
import { coordinatorCommand, coordinatorUsage, workerCommand, workerUsage } from './commands/distributed.ts';
import { serveCommand, serveUsage } from './commands/serve.ts';
import { cancelCommand, cancelUsage, reportCommand, reportUsage, runCommand, runUsage, statusCommand, statusUsage } from './commands/runs.ts';
import { ConfigError } from '../core/config/load.ts';
import { stopWhenParentDies } from '../core/run/parent-watch.ts';

export const commands: Record<string, { run: (argv: string[]) => Promise<number>; usage: string }> = {
  train: { run: trainCommand, usage: trainUsage },
  local: { run: localCommand, usage: localUsage },
  sweep: { run: sweepCommand, usage: sweepUsage },
  evaluate: { run: evaluateCommand, usage: evaluateUsage },
  export: { run: exportCommand, usage: exportUsage },
  coordinator: { run: coordinatorCommand, usage: coordinatorUsage },
  worker: { run: workerCommand, usage: workerUsage },
  serve: { run: serveCommand, usage: serveUsage },
  run: { run: runCommand, usage: runUsage },
  status: { run: statusCommand, usage: statusUsage },
  report: { run: reportCommand, usage: reportUsage },
  cancel: { run: cancelCommand, usage: cancelUsage },
};

const usage = `ttc — train large, then compress

usage: ttc <command> [options]    (ttc <command> --help for details)

commands:
${Object.values(commands).map((c) => `  ${c.usage.split('\n')[0]}`).join('\n')}`;

export async function main(argv: string[]): Promise<number> {
  stopWhenParentDies();
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage);
    return name ? 0 : 1;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`ttc: unknown command "${name}"\n\n${usage}`);
    return 2;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    const err = e as Error;
    // Expected failures (bad config, bad flags, bad files) get their message, not a stack.
    const expected = err instanceof ConfigError || String((err as { code?: unknown }).code ?? '').startsWith('ERR_PARSE_ARGS') || err.name.endsWith('Error') && err.name !== 'Error' && err.name !== 'TypeError';
    console.error(`ttc ${name}: ${expected ? err.message : err.stack ?? err.message}`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
