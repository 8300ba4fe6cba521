/**
 * The Kubernetes manifests' own commands and environment, run on this machine: the coordinator
 * and 2 workers of the composed `cpu` overlay are started with exactly the args and env their
 * containers get, with only names and paths mapped (Service DNS and pod IPs → loopback
 * addresses 127.0.0.x, mounted files → temp files). A small run must complete.
 */
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { compose, podSpec, type Manifest } from '../k8s/compose.ts';
import { spawnTtcWith } from './procs.ts';
import { tempDir, TEST_CACHE_DIR } from './helpers.ts';

const COORDINATOR_IP = '127.0.0.10';
const podIp = (i: number) => `127.0.0.${20 + i}`;

function container(ms: Manifest[], kind: string, name: string): { args: string[]; env: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }> } {
  const m = ms.find((x) => x.kind === kind && x.metadata.name === name);
  if (!m) throw new Error(`no ${kind} ${name} in the composed manifests`);
  return podSpec(m)!.containers[0];
}

test('the coordinator and 2 workers, started with exactly the manifests\' commands and environment, complete a run', async (t) => {
  const ms = compose('k8s/overlays/cpu', { missingFile: () => 'unused-in-this-test' });
  const coord = container(ms, 'Deployment', 'ttc-coordinator');
  const worker = container(ms, 'StatefulSet', 'ttc-worker');
  const dir = tempDir('k8s-local');

  // The mounted files: the Secret and the ConfigMap's run.json (with the PVC and emptyDir paths mapped).
  const secretFile = path.join(dir, 'secret');
  fs.writeFileSync(secretFile, crypto.randomBytes(24).toString('base64'));
  const runJson = JSON.parse(fs.readFileSync('k8s/base/configs/run.json', 'utf8'));
  const runsDir = path.join(dir, 'runs');
  const configFile = path.join(dir, 'run.json');
  fs.writeFileSync(configFile, JSON.stringify({ ...runJson, outputDir: runsDir, cacheDir: TEST_CACHE_DIR }));
  const mapValue = (v: string, ip: string): string =>
    v === '/var/run/secrets/ttc/secret' ? secretFile
    : v === '/etc/ttc/run.json' ? configFile
    : v === '0.0.0.0' ? ip
    : v.replace('ws://ttc-coordinator:', `ws://${COORDINATOR_IP}:`);
  const envOf = (c: typeof coord, ip: string, podName: string) =>
    Object.fromEntries(
      c.env.map((e) => {
        const field = e.valueFrom?.fieldRef?.fieldPath;
        const value = field === 'metadata.name' ? podName : field === 'status.podIP' ? ip : mapValue(e.value ?? '', ip);
        return [e.name, value];
      }),
    );
  // The one change beyond mapping: a budget small enough for a test (the manifests' run takes minutes).
  const coordArgs = [...coord.args.map((a) => mapValue(a, COORDINATOR_IP)), '--set', 'budget.flops=3e10', '--set', 'train.evalEvery=5'];
  t.deepEqual(coord.args.slice(0, 3), ['coordinator', '--config', '/etc/ttc/run.json']);
  t.deepEqual(worker.args, ['worker']);

  const clean = { TTC_SECRET: undefined, TTC_SECRET_FILE: undefined, TTC_COORDINATOR: undefined, TTC_HOST: undefined, TTC_PORT: undefined };
  const c = spawnTtcWith(coordArgs, { ...clean, ...envOf(coord, COORDINATOR_IP, 'ttc-coordinator-0') });
  await c.waitFor(/TTC_COORDINATOR_URL=ws:\/\/127\.0\.0\.10:7070/);
  const workers = [0, 1].map((i) => spawnTtcWith(worker.args, { ...clean, ...envOf(worker, podIp(i), `ttc-worker-${i}`) }));
  t.is(await c.exited, 0, c.lines.slice(-20).join('\n'));
  const out = c.lines.join('\n');
  t.regex(out, /worker "ttc-worker-0" .* registered/);
  t.regex(out, /worker "ttc-worker-1" .* registered/);
  t.regex(out, /ring of 2 up/);
  t.regex(out, /completed its budget/);
  for (const w of workers) t.is(await w.exited, 0);
  // Ring peers reached each other at their "pod IPs" on the manifests' ring port.
  t.true(workers.some((w) => w.lines.some((l) => /ring listener on 127\.0\.0\.2[01]:7071/.test(l))));
});
