/** What the bench's child processes share: one JSON object a line on stdout, and how main ends the process. */

/** Writes one JSON line to stdout (the parent reads them). */
export const emit = (o: unknown): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};

/**
 * Runs main and exits explicitly (a Dawn instance keeps the event loop alive): with main's code (0
 * when it returns none), or with 1 after emitting `{ error }` (the message's first line), and with
 * `stack` also the stack on stderr.
 */
export function runChildMain(main: () => Promise<number | void>, opts: { stack?: boolean } = {}): void {
  main().then(
    (code) => process.exit(code ?? 0),
    (e: unknown) => {
      emit({ error: e instanceof Error ? e.message.split('\n')[0] : String(e) });
      if (opts.stack) process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
      process.exit(1);
    },
  );
}
