/**
 * Ctrl-C (or SIGTERM, e.g. a parent that is gone) for the commands that train: the first asks the
 * job to stop — training finishes its current step and writes a checkpoint (resumable), a wait for
 * workers ends at once; a second one exits at once (the last checkpoint stays).
 */
import type { Logger } from '../core/run/log.ts';

export interface Interrupt {
  /** aborted at the first signal */
  readonly signal: AbortSignal;
  /** true once a stop was asked for */
  readonly requested: () => boolean;
  dispose(): void;
}

/** `message` is logged at the first signal; `beforeExit` runs before the second one exits (e.g. to kill child processes). */
export function onInterrupt(log: Logger, message: string, beforeExit: () => void = () => {}): Interrupt {
  const stop = new AbortController();
  const handler = () => {
    if (stop.signal.aborted) {
      beforeExit();
      process.exit(130);
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
