/**
 * Long CPU work written once as a generator whose `yield`s mark where it may pause: run to its end
 * at once (runSync), or paced (runPaced), giving the event loop a turn every few tens of
 * milliseconds so that signal handlers (Ctrl-C, SIGTERM), timers and sockets are served during
 * minutes of tokenizer training instead of after it.
 */

/** Runs the work to its end without pausing. */
export function runSync<T>(work: Generator<void, T, void>): T {
  for (;;) {
    const r = work.next();
    if (r.done) return r.value;
  }
}

/** Runs the work to its end, pausing for the event loop whenever `everyMs` of work have passed. */
export async function runPaced<T>(work: Generator<void, T, void>, everyMs = 50): Promise<T> {
  let until = performance.now() + everyMs;
  for (;;) {
    const r = work.next();
    if (r.done) return r.value;
    if (performance.now() >= until) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      until = performance.now() + everyMs;
    }
  }
}
