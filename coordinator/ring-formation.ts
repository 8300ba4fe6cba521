/**
 * Forming a ring of workers and giving every member the same starting state: shared by the
 * training coordinator (pretraining) and the evaluation step (data-parallel fine-tuning).
 */
import * as M from '../protocol/messages.ts';
import type { Message } from '../wire/protocol/index.ts';
import type { Logger } from '../core/run/log.ts';
import type { WorkerEntry, WorkerMsg, WorkerRegistry } from './registry.ts';

export type Collect = <T>(members: WorkerEntry[], what: string, pick: (msg: WorkerMsg) => T | undefined, timeoutMs: number) => Promise<Map<WorkerEntry, T>>;

export interface RingSpec {
  formation: number;
  ringId: string;
  /** the resolved run config, JSON */
  config: string;
  /** 'classify' for fine-tuning rings, with its JSON spec */
  task?: { kind: 'classify'; spec: string };
  /** first formation: workers may build the tokenizer and data cache */
  setupTimeoutMs: number;
  timeoutMs: number;
}

/** Assigns ranks, waits for every listener, wires each rank to its successor. Returns the ready reports. */
export async function formRing(reg: WorkerRegistry, collect: Collect, members: WorkerEntry[], spec: RingSpec, log: Logger): Promise<Map<WorkerEntry, Message<typeof M.RingReady>>> {
  const N = members.length;
  const { formation } = spec;
  members.forEach((w, rank) => (w.rank = rank));
  log.info(`formation ${formation}: ${members.map((w) => `rank ${w.rank} = "${w.name}"`).join(', ')}`);
  reg.broadcast(members, M.Assign, (w) => ({ formation, rank: w.rank!, worldSize: N, ringId: spec.ringId.slice(0, 128), config: spec.config, ...(spec.task ? { task: spec.task.kind, taskSpec: spec.task.spec } : {}) }));
  const ready = await collect(members, 'ring set-up', (m) => (m.t === 'coord.ring-ready' && m.formation === formation ? m : undefined), spec.setupTimeoutMs);
  for (const w of members) w.backend = ready.get(w)!.backend;
  reg.broadcast(members, M.RingConnect, (w) => {
    const next = ready.get(members[(w.rank! + 1) % N])!;
    return { formation, host: next.host, port: next.port };
  });
  await collect(members, 'ring connection', (m) => (m.t === 'coord.ring-up' && m.formation === formation ? true : undefined), spec.timeoutMs);
  log.info(`formation ${formation}: ring of ${N} up (${members.map((w) => w.backend).filter((b, i, a) => a.indexOf(b) === i).join('; ')})`);
  return ready;
}

/** Sends every member the same weights and optimizer state (one source of truth). */
export function loadState(reg: WorkerRegistry, members: WorkerEntry[], formation: number, s: { weights: Float32Array; m: Float32Array; v: Float32Array; adamT: number; mask?: Uint8Array }): void {
  const parts: Array<['weights' | 'm' | 'v' | 'mask', Float32Array]> = [['weights', s.weights], ['m', s.m], ['v', s.v]];
  if (s.mask) parts.push(['mask', Float32Array.from(s.mask)]);
  for (const [kind, arr] of parts) {
    for (let off = 0; off < arr.length; off += M.STATE_PART_FLOATS) {
      const data = arr.subarray(off, Math.min(arr.length, off + M.STATE_PART_FLOATS));
      reg.broadcast(members, M.LoadPart, () => ({ formation, kind, offset: off, data }));
    }
  }
  reg.broadcast(members, M.LoadDone, () => ({ formation, adamT: s.adamT, total: s.weights.length }));
}

/** Fetches rank `w`'s weights and optimizer state (after `step`). */
export async function fetchState(collect: Collect, w: WorkerEntry, formation: number, step: number, total: number, timeoutMs: number): Promise<{ weights: Float32Array; m: Float32Array; v: Float32Array; adamT: number } | { badPart: string }> {
  const snap = { weights: new Float32Array(total), m: new Float32Array(total), v: new Float32Array(total), adamT: 0 };
  let badPart = '';
  w.conn.send(M.StateRequest, { formation, step });
  const parts = (msg: WorkerMsg): number | undefined => {
    if (!('formation' in msg) || msg.formation !== formation) return undefined;
    if (msg.t === 'coord.state-part' && msg.step === step) {
      if (msg.offset + msg.data.length > total) badPart = `${msg.kind} [${msg.offset}, +${msg.data.length})`;
      else snap[msg.kind].set(msg.data, msg.offset);
      return undefined;
    }
    return msg.t === 'coord.state-done' && msg.step === step ? msg.adamT : undefined;
  };
  const r = await collect([w], `state transfer at step ${step}`, parts, timeoutMs);
  if (badPart) return { badPart };
  snap.adamT = r.get(w)!;
  return snap;
}
