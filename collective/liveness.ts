/**
 * Whether the ring is alive, and how it dies. Heartbeats: every rank sends `ring-alive` to its
 * successor every min(1 s, timeoutMs/4). The watchdog: during a call, a predecessor silent (no
 * frame, no heartbeat) for `timeoutMs` counted from the call's start at the earliest, or alive but
 * not starting the same call within `joinTimeoutMs`, is blamed; a rank whose own event loop was
 * blocked does not blame its predecessor for that. The abort: any failure (those two, a lost link,
 * a failed send, a protocol violation) is turned into one `CollectiveError` naming the culprit, a
 * `ring-abort` is sent both ways and forwarded by every rank that receives one, so every rank's
 * pending call rejects naming the same culprit. A ring that failed stays failed.
 */
import { describeClose, type Logger } from '../wire/net/index.ts';
import { CloseCode, type Message } from '../wire/protocol/index.ts';
import { CollectiveError } from './errors.ts';
import type { RingLinks } from './links.ts';
import { RingAbort, RingAlive } from './messages.ts';

/** What the watchdog needs to know about the pending call. */
export interface WatchedCall {
  readonly seq: number;
  /** performance.now() at the call's start on this rank */
  readonly t0: number;
  /** the predecessor's `ring-start` for this call arrived */
  readonly prevStarted: boolean;
  /** e.g. "allReduce #12", for messages */
  readonly what: string;
}

export interface LivenessParams {
  rank: number;
  timeoutMs: number;
  joinTimeoutMs: number;
  log: Logger;
}

export interface LivenessHooks {
  /** the pending call, if any */
  current(): WatchedCall | undefined;
  /** calls started so far (the heartbeat's `seq`) */
  started(): number;
  /** the ring failed: reject the pending call with `err` (the links are already closing) */
  failed(err: CollectiveError): void;
}

export class Liveness {
  /** the error that broke the ring, if any */
  failure: CollectiveError | undefined;
  /** performance.now() of the last frame, ping or pong from the predecessor */
  prevHeard = 0;
  /** the predecessor's last heartbeat `seq` (calls it has started) */
  prevSeq = 0;
  private stopped = false;
  private heartbeat: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private watchdogLast = 0;

  constructor(private readonly p: LivenessParams, private readonly links: RingLinks, private readonly hooks: LivenessHooks) {}

  get heartbeatMs(): number {
    return Math.max(20, Math.min(1000, Math.floor(this.p.timeoutMs / 4)));
  }

  /** Heartbeats to the successor, from the moment it knows us (it may finish forming before we do). */
  startHeartbeat(): void {
    if (this.heartbeat || this.stopped) return;
    this.heartbeat = setInterval(() => this.sendHeartbeat(), this.heartbeatMs);
    this.heartbeat.unref();
  }

  /** The watchdog on the predecessor, once the ring has formed. */
  startWatchdog(): void {
    if (this.watchdog || this.stopped) return;
    const hb = this.heartbeatMs;
    this.prevHeard = performance.now();
    this.watchdogLast = performance.now();
    this.watchdog = setInterval(() => this.check(hb), Math.max(10, Math.floor(hb / 2)));
    this.watchdog.unref();
  }

  /** Stop the timers; after this nothing fails the ring any more (it is closing). */
  stop(): void {
    this.stopped = true;
    this.stopTimers();
  }

  private stopTimers(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.watchdog) clearInterval(this.watchdog);
    this.heartbeat = this.watchdog = undefined;
  }

  private sendHeartbeat(): void {
    const next = this.links.next;
    if (next?.isOpen && !this.failure) next.send(RingAlive, { seq: this.hooks.started(), active: !!this.hooks.current() }, undefined, { validate: false });
  }

  /** A heartbeat from the predecessor. */
  onAlive(msg: Message<typeof RingAlive>): void {
    this.prevSeq = msg.seq;
  }

  private check(hb: number): void {
    if (this.failure || this.stopped) return;
    const now = performance.now();
    // our own event loop was blocked (long synchronous work): do not blame the predecessor for it
    if (now - this.watchdogLast > 2 * hb + 50) this.prevHeard = Math.max(this.prevHeard, now - hb);
    this.watchdogLast = now;
    // Silence only matters while we wait for data: between calls the predecessor may be busy in
    // synchronous work (no heartbeats then), and a dead process closes its sockets anyway. Within a
    // call the predecessor gets timeoutMs counted from our call's start at the earliest.
    const call = this.hooks.current();
    if (!call) return;
    const { timeoutMs, joinTimeoutMs } = this.p;
    const prev = `rank ${this.links.prevRank} (${this.links.prevListen})`;
    const heard = Math.max(this.prevHeard, call.t0);
    if (now - heard > timeoutMs) {
      this.fail(this.links.prevRank, this.links.prevListen, `${prev} stopped responding: no data or heartbeat for ${Math.round(now - heard)} ms (timeout ${timeoutMs} ms)`);
      return;
    }
    if (!call.prevStarted && this.prevSeq <= call.seq && now - call.t0 > joinTimeoutMs) {
      this.fail(this.links.prevRank, this.links.prevListen, `${prev} is alive but has not started ${call.what} within ${joinTimeoutMs} ms`);
    }
  }

  /** A joined link closed. */
  linkClosed(which: 'prev' | 'next', code: number, reason: string, byUs: boolean): void {
    if (this.failure || this.stopped || byUs) return;
    const rank = which === 'prev' ? this.links.prevRank : this.links.nextRank;
    const addr = which === 'prev' ? this.links.prevListen : this.links.nextListen;
    const what = code === CloseCode.NORMAL || code === CloseCode.GOING_AWAY ? 'closed its link' : `link lost: ${describeClose(code, reason)}`;
    this.fail(rank, addr, `rank ${rank} (${addr}) ${what}`, !!this.hooks.current());
  }

  /** The predecessor broke the protocol (or issued a different call): blame it. */
  violation(text: string): void {
    const { prevRank, prevListen } = this.links;
    this.fail(prevRank, prevListen, `protocol violation by rank ${prevRank} (${prevListen}): ${text}`);
  }

  /** The successor sent something it must not. */
  violationByNext(text: string): void {
    const { nextRank, nextListen } = this.links;
    this.fail(nextRank, nextListen, `protocol violation by rank ${nextRank}: ${text}`);
  }

  /** A `ring-abort` from either neighbour: fail with its culprit, and forward it. */
  onAbort(msg: Message<typeof RingAbort>): void {
    this.fail(msg.failedRank, msg.failedAddress, msg.reason, !!this.hooks.current(), msg.origin);
  }

  /** Fail the ring: build the error, tell both neighbours, close the links, reject the pending call. */
  fail(failedRank: number | undefined, failedAddress: string | undefined, reason: string, logIt = true, origin = this.p.rank): void {
    if (this.failure || this.stopped) return;
    const rank = this.p.rank;
    const call = this.hooks.current();
    const what = call ? `ring ${call.what}` : 'ring';
    const culprit = failedRank !== undefined ? `rank ${failedRank}${failedAddress ? ` (${failedAddress})` : ''}` : 'unknown rank';
    const msg = origin === rank
      ? `${what} failed at rank ${rank}: ${reason}`
      : `${what} aborted: ${reason} [detected by rank ${origin}; culprit ${culprit}]`;
    this.failure = new CollectiveError(msg, failedRank, failedAddress, origin);
    if (logIt) this.p.log(`ring rank ${rank}: ${msg}`);
    this.stopTimers();
    const abort = {
      origin, reason: reason.slice(0, 1024),
      ...(failedRank !== undefined ? { failedRank } : {}), ...(failedAddress ? { failedAddress: failedAddress.slice(0, 300) } : {}),
    };
    for (const conn of [this.links.next, this.links.prev]) {
      if (conn?.isOpen) {
        conn.send(RingAbort, abort);
        conn.close(CloseCode.ABORTED, `ring aborted: ${culprit}`);
      }
    }
    this.hooks.failed(this.failure);
  }
}
