/**
 * The dashboard's API without processes (coordinator/dashboard.ts): a sweep with its members read
 * from their run directories and the live member's view, a member's own detail, ids that are not
 * names refused, a coordinator of one run listing its training; the addresses `ttc token --url`
 * and the start-up line print.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { Dashboard, dashboardHint, dashboardUrl } from '../../coordinator/dashboard.ts';
import type { TrainingSample } from '../../coordinator/metrics.ts';
import { silentLogger } from '../../core/run/log.ts';
import type { RunRecord, TrainingView } from '../../protocol/index.ts';
import { tempDir } from '../kit/helpers.ts';

function view(runId: string, runDir: string, phase: string, step: number): TrainingView {
  return {
    runId, runDir, phase, formation: 2, uptimeSeconds: 5, workers: [], step, totalSteps: 10,
    budget: { kind: 'steps', flops: 0, seconds: 0, steps: 10, calibrationSteps: 0 },
    budgetFraction: step / 10, etaSeconds: 3, flopsUsed: 1e9, secondsUsed: 2, tokensSeen: 100, trainLoss: 6.5, valLoss: 6.6,
    tokensPerSecond: 1000, lastCheckpointStep: 4, failures: ['worker "w2" disconnected during step 3'],
  };
}

function member(sweepDir: string, id: string, rows: number, summary?: object): string {
  const dir = path.join(sweepDir, 'members', id);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), '{}');
  fs.writeFileSync(path.join(dir, 'metrics.jsonl'), Array.from({ length: rows }, (_, i) => `${JSON.stringify({ step: i + 1, tokens: 10, flops: 1e8 * (i + 1), seconds: i, wallSeconds: i, lr: 1e-3, trainLoss: 7 - i / 10 })}\n`).join(''));
  if (summary) fs.writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(summary));
  return dir;
}

test('a sweep lists its members (done from summary.json, running from the live view) and each member has its own detail', (t) => {
  const root = tempDir('dash-unit');
  const sweepDir = path.join(root, 'sw');
  member(sweepDir, 'a', 10, { completed: true, steps: 10, totalSteps: 10, finalValLoss: 6.1 });
  const bDir = member(sweepDir, 'b', 4);
  fs.mkdirSync(path.join(sweepDir, 'members', 'not-started')); // no config.json: not listed
  const record: RunRecord = { id: 'sw', kind: 'sweep', dir: sweepDir, state: 'running', submittedAt: 'x', stage: 'pretraining member 2/3 b', stageDone: 1, stageTotal: 3 };
  const live: TrainingSample = {
    view: view('b', bDir, 'training', 4), timing: undefined, stepSeconds: 0.1, reformations: 1,
    timeline: {
      splits: [{ step: 4, formation: 2, ranks: [{ rank: 0, name: 'w0', computeMs: 10, readBackMs: 1, allReduceMs: 2, updateMs: 3 }] }],
      events: [{ at: 'now', kind: 'formed', formation: 1, workers: ['w0', 'w2'], fromStep: 0 }, { at: 'now', kind: 'failure', formation: 1, reason: 'worker "w2" disconnected during step 3' }, { at: 'now', kind: 'formed', formation: 2, workers: ['w0'], fromStep: 0 }],
    },
  };
  const d = new Dashboard({ readToken: Buffer.from('t'), log: silentLogger, secure: false, source: { kind: 'server', records: () => [record], trainings: () => [live], workers: () => [] } });

  const sweep = d.runDetail('sw', undefined) as Record<string, unknown>;
  t.like(sweep, { id: 'sw', kind: 'sweep', state: 'running', stageDone: 1, stageTotal: 3, liveMember: 'b', report: null });
  t.false('dir' in sweep);
  t.deepEqual(sweep.members, [
    { id: 'a', state: 'done', step: 10, totalSteps: 10, valLoss: 6.1 },
    { id: 'b', state: 'running', step: 4, totalSteps: 10, valLoss: 6.6 },
  ]);
  const b = d.runDetail('sw', 'b') as Record<string, any>;
  t.like(b, { id: 'sw/b', sweep: 'sw', state: 'running', reformations: 1 });
  t.is(b.history.length, 4);
  t.is(b.splits[0].ranks[0].readBackMs, 1);
  t.is(b.events.length, 3);
  t.deepEqual(b.failures, ['worker "w2" disconnected during step 3']);
  t.false('runDir' in b.view, 'no server paths');
  const a = d.runDetail('sw', 'a') as Record<string, any>;
  t.like(a, { id: 'sw/a', state: 'done', summary: { completed: true }, view: null, splits: [] });

  // the overview shows the sweep with its live member's numbers
  const o = d.overview() as { runs: Array<Record<string, unknown>> };
  t.like(o.runs[0], { id: 'sw', kind: 'sweep', live: true, step: 4 });

  // names only: no paths, no unknown members
  for (const [id, m] of [['sw', 'not-started'], ['sw', '..'], ['..', undefined], ['sw', 'a/../../x'], ['nope', undefined], ['b', 'a']] as const) t.is(d.runDetail(id, m), undefined, `${id} ${m}`);
});

test('a coordinator of one run lists its training as the run', (t) => {
  const root = tempDir('dash-unit');
  const dir = member(root, 'r1', 3);
  const s: TrainingSample = { view: view('r1', dir, 'done', 10), timing: undefined, stepSeconds: 0.1, reformations: 0 };
  const d = new Dashboard({ readToken: Buffer.from('t'), log: silentLogger, secure: false, source: { kind: 'run', trainings: () => [s], workers: () => [] } });
  const o = d.overview() as { kind: string; runs: Array<Record<string, unknown>> };
  t.is(o.kind, 'run');
  t.like(o.runs[0], { id: 'r1', kind: 'train', state: 'done', step: 10 });
  t.like(d.runDetail('r1', undefined), { id: 'r1', state: 'done', splits: [], events: [] });
});

test('metrics.jsonl is read as it grows (a row being written waits), and again whole once replaced', (t) => {
  const root = tempDir('dash-unit');
  const dir = member(root, 'r2', 3);
  const file = path.join(dir, 'metrics.jsonl');
  const s: TrainingSample = { view: view('r2', dir, 'training', 3), timing: undefined, stepSeconds: 0.1, reformations: 0 };
  const d = new Dashboard({ readToken: Buffer.from('t'), log: silentLogger, secure: false, source: { kind: 'run', trainings: () => [s], workers: () => [] } });
  const steps = () => (d.runDetail('r2', undefined) as { history: Array<{ step: number }> }).history.map((r) => r.step);
  t.deepEqual(steps(), [1, 2, 3]);
  const row = (step: number) => JSON.stringify({ step, tokens: 10, flops: 1, seconds: 1, wallSeconds: 1, lr: 0, trainLoss: 6 });
  fs.appendFileSync(file, `${row(4)}\n${row(5).slice(0, 20)}`); // step 5 half written
  t.deepEqual(steps(), [1, 2, 3, 4]);
  fs.appendFileSync(file, `${row(5).slice(20)}\n`);
  t.deepEqual(steps(), [1, 2, 3, 4, 5]);
  // a resume rewrites the file with the rows up to its checkpoint (atomically: a new file)
  fs.writeFileSync(`${file}.new`, `${row(1)}\n${row(2)}\n`);
  fs.renameSync(`${file}.new`, file);
  t.deepEqual(steps(), [1, 2]);
});

test('the dashboard address from a coordinator address, never with the token in the start-up line', (t) => {
  t.is(dashboardUrl('ws://127.0.0.1:7070'), 'http://127.0.0.1:7070/dashboard');
  t.is(dashboardUrl('wss://ttc.example:443/'), 'https://ttc.example/dashboard');
  t.is(dashboardUrl('10.0.0.4:7070'), 'http://10.0.0.4:7070/dashboard');
  t.is(dashboardUrl('http://[::1]:7070'), 'http://[::1]:7070/dashboard');
  t.throws(() => dashboardUrl('ftp://x'));
  t.regex(dashboardHint('ws://127.0.0.1:7070'), /^dashboard: http:\/\/127\.0\.0\.1:7070\/dashboard .*`ttc token --url ws:\/\/127\.0\.0\.1:7070`/);
});
