/**
 * The `ttc` command line: one sub-command per job, each in its own file under cli/commands/
 * (parse the arguments, call the runtime, print), loaded only when it runs — `ttc status` never
 * loads TensorFlow.js. A coded error (TTC_ERR_*, core/errors.ts) is printed as its message, without
 * a stack; anything else is a bug and gets its stack.
 */
import { pathToFileURL } from 'node:url';
import { isTtcError } from '../core/errors.ts';
import { stopWhenParentDies } from '../core/run/parent-watch.ts';

export interface Command {
  /** the full usage; its first line is the command's synopsis */
  usage: string;
  run(argv: string[]): Promise<number>;
}

/** Every command: its synopsis (the first line of its usage) and how to load it. */
export const commands: Record<string, { synopsis: string; load: () => Promise<Command> }> = {
  train: { synopsis: 'ttc train --config <file.json> [--set key=value ...]', load: () => import('./commands/train.ts') },
  local: { synopsis: 'ttc local --workers N --config <file.json> [--set key=value ...]', load: () => import('./commands/local.ts') },
  sweep: { synopsis: 'ttc sweep --config <sweep.json> [--workers N] [--verbose]', load: () => import('./commands/sweep.ts') },
  evaluate: { synopsis: 'ttc evaluate --sweep runs/<id> [--host H] [--port P] [--workers N]', load: () => import('./commands/evaluate.ts') },
  export: { synopsis: 'ttc export (--run runs/<id> | --checkpoint <checkpoint dir>) [--compressed <file> | --finetuned <file>] [--tokenizer <file>] --out <dir>', load: () => import('./commands/export.ts') },
  compress: { synopsis: 'ttc compress (--run runs/<id> | --checkpoint <checkpoint dir>) [--finetuned <file>] --method M [level flags] --out <file>', load: () => import('./commands/compress.ts') },
  coordinator: { synopsis: 'ttc coordinator --config <file.json> [--host H] [--port P] [--set key=value ...]', load: () => import('./commands/coordinator.ts') },
  worker: { synopsis: 'ttc worker --coordinator ws://host:port [--name N] [--listen-host H] [--advertise-host H] [--ring-port P]', load: () => import('./commands/worker.ts') },
  serve: { synopsis: 'ttc serve [--host H] [--port P] [--output-dir DIR] [--set key=value ...]', load: () => import('./commands/serve.ts') },
  run: { synopsis: 'ttc run --coordinator URL --config <file.json> [--set key=value ...] [--name N] [--detach] [--report-dir DIR]', load: () => import('./commands/run.ts') },
  status: { synopsis: 'ttc status --coordinator URL [--run ID] [--follow] [--json]', load: () => import('./commands/status.ts') },
  report: { synopsis: 'ttc report --coordinator URL --run ID [--out DIR]', load: () => import('./commands/report.ts') },
  data: { synopsis: 'ttc data (ddtp [--mirror URL] [--keyring FILE] [--offline] | tsv --in <pairs.tsv>) [--out DIR]', load: () => import('./commands/data.ts') },
  token: { synopsis: 'ttc token [--url URL]', load: () => import('./commands/token.ts') },
  cancel: { synopsis: 'ttc cancel --coordinator URL --run ID', load: () => import('./commands/cancel.ts') },
};

const usage = `ttc — train large, then compress

usage: ttc <command> [options]    (ttc <command> --help for details)

commands:
${Object.values(commands).map((c) => `  ${c.synopsis}`).join('\n')}`;

export async function main(argv: string[]): Promise<number> {
  stopWhenParentDies();
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage);
    return name ? 0 : 1;
  }
  const entry = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!entry) {
    console.error(`ttc: unknown command "${name}"\n\n${usage}`);
    return 2;
  }
  try {
    const cmd = await entry.load();
    if (rest.includes('--help') || rest.includes('-h')) {
      console.log(cmd.usage);
      return 0;
    }
    return await cmd.run(rest);
  } catch (e) {
    // Expected failures (bad flags, config, files, peers) get their message; a bug gets its stack.
    console.error(`ttc ${name}: ${isTtcError(e) ? e.message : ((e as Error).stack ?? String(e))}`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
