/**
 * Ctrl-C (or SIGTERM, e.g. a parent that is gone) for the commands that train: the first asks the
 * job to finish its current step, write a checkpoint and stop (resumable); a second one exits at
 * once (the last checkpoint stays).
 */
import type { Logger } from '../core/run/log.ts';

export interface Interrupt {
  /** true once a stop was asked for */
  readonly requested: () => boolean;
  dispose(): void;
}

/** `message` is logged at the first signal; `beforeExit` runs before the second one exits (e.g. to kill child processes). */
export function onInterrupt(log: Logger, message: string, beforeExit: () => void = () => {}): Interrupt {
  let requested = false;
  const handler = () => {
    if (requested) {
      beforeExit();
      process.exit(130);
    }
    requested = true;
    log.warn(message);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    requested: () => requested,
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
