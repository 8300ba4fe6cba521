/**
 * The one error every collective failure is reported with: `CollectiveError` (code
 * `TTC_ERR_COLLECTIVE`), carrying the rank held responsible (dead, stalled or misbehaving) and its
 * address when known, and the rank that detected the failure. Misuse that is the caller's own
 * (a call before connect, a second concurrent call, a closed group) is a CollectiveError without a
 * culprit; a wrong argument type is a TypeError or RangeError instead.
 */
import { TtcError } from '../core/errors.ts';

export class CollectiveError extends TtcError {
  override name = 'CollectiveError';
  constructor(
    message: string,
    /** the rank held responsible (dead, stalled, misbehaving), when known */
    readonly failedRank: number | undefined,
    /** its listening address "host:port", when known */
    readonly failedAddress: string | undefined,
    /** the rank that detected the failure */
    readonly detectedBy: number,
    options?: ErrorOptions,
  ) {
    super('TTC_ERR_COLLECTIVE', message, options);
  }
}
