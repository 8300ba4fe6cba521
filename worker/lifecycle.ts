/**
 * A worker's lifecycle as an explicit state machine, and the coordinator messages each state
 * accepts:
 *
 *   idle ──assign──▶ assigned ──ring-connect──▶ ring-up ──load──▶ loaded ⇄ stepping
 *                                                          (loaded ──load──▶ loaded: weights restored, e.g. early stopping's best)
 *     ▲                                                               │
 *     └──────────────────────── reset (from any state) ◀─────────────┘        stop → stopped
 *
 * idle also runs evaluation jobs (blobs, then the job). A message the current state does not
 * accept, or one for another ring formation than the worker's, is refused with a stable code
 * (TTC_ERR_UNEXPECTED_MESSAGE, TTC_ERR_STALE_FORMATION) sent back as `worker.refused`, so a
 * protocol bug names itself at once instead of showing up as a step timeout.
 */
import type { ErrorCode } from '../core/errors.ts';
import type { M } from '../protocol/index.ts';
import type { Message } from '../wire/protocol/index.ts';

export type WorkerState = 'idle' | 'assigned' | 'ring-up' | 'loaded' | 'stepping' | 'stopped';
export type WorkerInMsg = Message<(typeof M.toWorker)[number]>;
type InType = WorkerInMsg['t'];

const ANY: readonly InType[] = ['coord.reset', 'coord.stop'];
/** What each state accepts. `stepping` (a step, calibration, evaluation, hash or state transfer running) takes only reset and stop, which interrupt it. */
export const ACCEPTS: Readonly<Record<WorkerState, readonly InType[]>> = {
  idle: ['coord.assign', 'coord.blob', 'coord.job', ...ANY],
  assigned: ['coord.ring-connect', ...ANY],
  'ring-up': ['coord.blob', 'coord.load', ...ANY],
  loaded: ['coord.step', 'coord.calibrate', 'coord.eval', 'coord.hash', 'coord.state', 'coord.blob', 'coord.load', ...ANY],
  stepping: ANY,
  stopped: [],
};

export interface Refusal {
  code: ErrorCode;
  reason: string;
}

export class Lifecycle {
  private current: WorkerState = 'idle';
  /** the ring formation this worker is in (assigned and later states) */
  formation: number | undefined;

  get state(): WorkerState {
    return this.current;
  }

  /** Why `msg` is refused now, or undefined when the current state accepts it. */
  check(msg: WorkerInMsg): Refusal | undefined {
    if (!ACCEPTS[this.current].includes(msg.t)) {
      return { code: 'TTC_ERR_UNEXPECTED_MESSAGE', reason: `${msg.t} is not accepted in state "${this.current}" (accepted: ${ACCEPTS[this.current].join(', ') || 'nothing'})` };
    }
    // A reset names the formation it ends (an older one is already over); an assignment starts a new one.
    if ('formation' in msg && msg.t !== 'coord.reset' && msg.t !== 'coord.assign' && msg.formation !== this.formation) {
      return { code: 'TTC_ERR_STALE_FORMATION', reason: `${msg.t} for ring formation ${msg.formation}, but this worker is in formation ${this.formation ?? 'none'}` };
    }
    return undefined;
  }

  /** Moves to `state` (entering `assigned` sets the formation, `idle` clears it). */
  to(state: WorkerState, formation?: number): void {
    this.current = state;
    if (state === 'assigned') this.formation = formation;
    if (state === 'idle' || state === 'stopped') this.formation = undefined;
  }
}
