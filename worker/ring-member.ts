/**
 * This worker's place in one ring formation: its rank, the collective group (a Ring over
 * authenticated peer links), the task the ring trains and, once a state is loaded, the model
 * Replica whose process group is the ring (ml/train/data-parallel.ts: bucketed reduce-scatter, a
 * sharded update and a weight all-gather by default). Loading takes the state the coordinator
 * sent to rank 0 and broadcasts it to every rank over the ring, so every replica starts from the
 * same bytes and the coordinator sends the model once, not once per worker.
 */
import { Ring, type RingTls } from '../collective/index.ts';
import type { SecretInput } from '../wire/auth.ts';
import type { Logger } from '../core/run/log.ts';
import type { Config } from '../core/config/schema.ts';
import { TtcError } from '../core/errors.ts';
import { Replica, type TrainerState } from '../ml/loop/executor.ts';
import type { TrainingTask } from '../ml/tasks/task.ts';
import type { Blobs } from '../protocol/index.ts';

export interface RingMemberOptions {
  formation: number;
  rank: number;
  worldSize: number;
  ringId: string;
  config: Config;
  task: TrainingTask;
  listen: { host: string; port: number };
  secret: SecretInput;
  tls?: RingTls;
  log: Logger;
}

export class RingMember {
  replica: Replica<unknown> | undefined;

  private constructor(readonly opts: RingMemberOptions, readonly ring: Ring) {}

  /** Starts this rank's ring listener (its port goes to the coordinator in `ring-ready`). */
  static async open(opts: RingMemberOptions): Promise<RingMember> {
    const { config } = opts;
    const ring = await Ring.open({
      rank: opts.rank,
      worldSize: opts.worldSize,
      listen: opts.listen,
      secret: opts.secret,
      timeoutMs: config.dist.ringTimeoutSeconds * 1000,
      segmentBytes: config.dist.segmentBytes,
      ringId: opts.ringId,
      ...(opts.tls ? { tls: opts.tls } : {}),
      log: (l) => opts.log.info(l),
    });
    return new RingMember(opts, ring);
  }

  get formation(): number {
    return this.opts.formation;
  }

  get task(): TrainingTask {
    return this.opts.task;
  }

  connect(next: { host: string; port: number }): Promise<void> {
    return this.ring.connect(next);
  }

  /**
   * Builds the replica from the state rank 0 received (`sent`: weights, and m, v when `moments`,
   * and the mask when `mask`), broadcast from rank 0 to every rank; the other ranks pass no blobs.
   */
  async load(sent: Blobs, how: { adamT: number; total: number; moments: boolean; mask: boolean }): Promise<void> {
    const total = this.task.layout.total;
    if (how.total !== total) throw new TtcError('TTC_ERR_PROTOCOL', `the coordinator loads a model of ${how.total} parameters; this ring's task has ${total}`);
    const names = ['weights', ...(how.moments ? ['m', 'v'] : []), ...(how.mask ? ['mask'] : [])];
    const parts: Blobs = {};
    for (const name of names) {
      let buf = sent[name];
      if (this.opts.rank === 0) {
        if (!buf || buf.length !== total) throw new TtcError('TTC_ERR_PROTOCOL', `load: "${name}" ${buf ? `has ${buf.length} floats, expected ${total}` : 'was not sent'}`);
      } else {
        buf = new Float32Array(total);
      }
      await this.ring.broadcast(buf, 0);
      parts[name] = buf;
    }
    const start: TrainerState = { weights: parts.weights!, m: parts.m ?? new Float32Array(total), v: parts.v ?? new Float32Array(total), t: how.adamT };
    this.replica?.dispose();
    const dist = this.opts.config.dist;
    this.replica = new Replica(this.task, start, { group: this.ring, options: dist }, parts.mask ? Uint8Array.from(parts.mask) : undefined);
    const { dp, optimizer } = this.replica.trainer;
    this.opts.log.info(`rank ${this.opts.rank}: ${dp.buckets.length} gradient bucket(s)${dist.gradWire === 'bf16' ? ' sent as bf16 with error feedback' : ''}; ${dp.sharded ? `sharded optimizer: AdamW state for ${optimizer.owned} of ${total} parameters (${((optimizer.owned * 8) / 1e6).toFixed(1)} MB)` : `unsharded optimizer (${((total * 8) / 1e6).toFixed(1)} MB of AdamW state)`}`);
  }

  /** The loaded replica (the lifecycle only lets step/eval/hash/state messages through once loaded). */
  get loaded(): Replica<unknown> {
    if (!this.replica) throw new Error('ring member: no state loaded');
    return this.replica;
  }

  async close(): Promise<void> {
    this.replica?.dispose();
    this.replica = undefined;
    await this.ring.close().catch(() => {});
  }
}
