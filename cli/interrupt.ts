/**
 * Ctrl-C (or SIGTERM, e.g. a parent that is gone) for the commands that train. While the job can
 * stop gracefully (`graceful()`), the first signal asks it to: training finishes its current step
 * and writes a checkpoint (resumable), a wait for workers ends at once; a second one exits at once
 * (the last checkpoint stays). Otherwise — data being prepared, a ring being formed while its
 * workers load their data: nothing to finish or checkpoint, and no bound on how long it takes —
 * the first signal exits at once.
 */
import type { Logger } from '../core/run/log.ts';

export interface Interrupt {
  /** aborted at the first signal */
  readonly signal: AbortSignal;
  /** true once a stop was asked for */
  readonly requested: () => boolean;
  dispose(): void;
}

/** The exit status of a process stopped by Ctrl-C or SIGTERM (128 + SIGINT). */
export const INTERRUPTED_EXIT = 130;

/**
 * `message` is logged at a graceful first signal; `beforeExit` runs before an exit at once (e.g. to
 * kill child processes); `graceful` says whether a first signal can be served by stopping gracefully now.
 */
export function onInterrupt(log: Logger, message: string, beforeExit: () => void = () => {}, graceful: () => boolean = () => true): Interrupt {
  const stop = new AbortController();
  const handler = (signal: NodeJS.Signals) => {
    if (stop.signal.aborted || !graceful()) {
      if (!stop.signal.aborted) log.warn(`interrupted (${signal}) while no training step runs: stopping now (nothing to finish or checkpoint; the last checkpoint, if any, stays)`);
      beforeExit();
      process.exit(INTERRUPTED_EXIT);
    }
    stop.abort('interrupted');
    log.warn(message);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: stop.signal,
    requested: () => stop.signal.aborted,
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
