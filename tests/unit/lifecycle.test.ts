/**
 * The worker's lifecycle state machine (worker/lifecycle.ts), exhaustively: every state against
 * every coordinator message it can receive — accepted exactly where the table says, refused with
 * TTC_ERR_UNEXPECTED_MESSAGE elsewhere, and with TTC_ERR_STALE_FORMATION when a message names
 * another ring formation than the worker's.
 */
import test from 'ava';
import { ACCEPTS, Lifecycle, type WorkerInMsg, type WorkerState } from '../../worker/lifecycle.ts';
import { M } from '../../protocol/index.ts';
import { PROTOCOL_VERSION } from '../../wire/protocol/index.ts';

const F = 7;
/** One well-formed message of every type a worker receives, for formation F. */
const samples: WorkerInMsg[] = [
  { v: PROTOCOL_VERSION, t: 'coord.assign', formation: F, rank: 0, worldSize: 1, ringId: 'r', config: '{}', task: { kind: 'mlm' } },
  { v: PROTOCOL_VERSION, t: 'coord.ring-connect', formation: F, host: '127.0.0.1', port: 1 },
  { v: PROTOCOL_VERSION, t: 'coord.blob', stream: `load/${F}`, name: 'weights', offset: 0, total: 1, data: new Float32Array(1) },
  { v: PROTOCOL_VERSION, t: 'coord.load', formation: F, adamT: 0, total: 1, moments: false, mask: false },
  { v: PROTOCOL_VERSION, t: 'coord.step', formation: F, step: 0, lr: 0.1, epoch: 0, offset: 0 },
  { v: PROTOCOL_VERSION, t: 'coord.calibrate', formation: F, count: 1, epoch: 0, offset: 0 },
  { v: PROTOCOL_VERSION, t: 'coord.eval', formation: F, step: 0 },
  { v: PROTOCOL_VERSION, t: 'coord.hash', formation: F, step: 0 },
  { v: PROTOCOL_VERSION, t: 'coord.state', formation: F, step: 0 },
  { v: PROTOCOL_VERSION, t: 'coord.reset', formation: F, reason: 'x' },
  { v: PROTOCOL_VERSION, t: 'coord.stop', reason: 'x', ok: true },
  { v: PROTOCOL_VERSION, t: 'coord.job', jobId: 'j', job: { kind: 'cell-trained', config: '{}', classificationSeed: 1, selection: {}, cell: { method: 'none', embeddings: false }, rounds: [] } },
];

const inState = (state: WorkerState): Lifecycle => {
  const life = new Lifecycle();
  if (state !== 'idle') life.to('assigned', F);
  if (state !== 'assigned') life.to(state);
  return life;
};

test('the samples cover every message a worker accepts from a coordinator', (t) => {
  t.deepEqual(samples.map((m) => m.t).sort(), M.toWorker.map((d) => d.type).sort());
});

for (const state of Object.keys(ACCEPTS) as WorkerState[]) {
  test(`state ${state}: accepts exactly ${ACCEPTS[state].join(', ') || 'nothing'}; refuses the rest with a stable code`, (t) => {
    const life = inState(state);
    for (const msg of samples) {
      const r = life.check(msg);
      if (ACCEPTS[state].includes(msg.t)) t.is(r, undefined, `${state} accepts ${msg.t}`);
      else {
        t.is(r?.code, 'TTC_ERR_UNEXPECTED_MESSAGE', `${state} refuses ${msg.t}`);
        t.regex(r!.reason, new RegExp(`${msg.t.replace('.', '\\.')} is not accepted in state "${state}"`));
      }
    }
  });
}

test('a message for another formation is refused as stale (a reset for an older one is not)', (t) => {
  const life = inState('loaded');
  const stale = { ...samples.find((m) => m.t === 'coord.step')!, formation: F - 1 } as WorkerInMsg;
  t.deepEqual(life.check(stale), { code: 'TTC_ERR_STALE_FORMATION', reason: `coord.step for ring formation ${F - 1}, but this worker is in formation ${F}` });
  t.is(life.check({ v: PROTOCOL_VERSION, t: 'coord.reset', formation: F - 1, reason: 'old' }), undefined);
});

test('transitions: assigned sets the formation, idle and stopped clear it; stopped accepts nothing', (t) => {
  const life = new Lifecycle();
  t.is(life.state, 'idle');
  life.to('assigned', 3);
  t.is(life.formation, 3);
  life.to('ring-up');
  life.to('loaded');
  life.to('stepping');
  t.is(life.formation, 3);
  life.to('idle');
  t.is(life.formation, undefined);
  life.to('stopped');
  for (const m of samples) t.is(life.check(m)?.code, 'TTC_ERR_UNEXPECTED_MESSAGE');
});
