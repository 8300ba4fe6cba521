/**
 * The Kubernetes manifests' own commands and environment, run on this machine: the coordinator
 * (run server) and 2 workers of the `cpu` overlay, composed by `kustomize build`, are started with exactly the args and
 * env their containers get, with only names and paths mapped (Service DNS and pod IPs → loopback
 * addresses 127.0.0.x, mounted files and volumes → temp files). The ConfigMap's run config,
 * submitted with `ttc run` as docs/kubernetes.md says, must complete.
 */
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { kustomizeBuild, podSpec, type Manifest } from './kit/kustomize.ts';
import { spawnTtcWith } from './kit/procs.ts';
import { tempDir, TEST_CACHE_DIR } from './kit/helpers.ts';

const COORDINATOR_IP = '127.0.0.10';
const podIp = (i: number) => `127.0.0.${20 + i}`;

function container(ms: Manifest[], kind: string, name: string): { args: string[]; env: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }> } {
  const m = ms.find((x) => x.kind === kind && x.metadata.name === name);
  if (!m) throw new Error(`no ${kind} ${name} in the composed manifests`);
  return podSpec(m)!.containers[0];
}

test('the coordinator and 2 workers, started with exactly the manifests\' commands and environment, complete a run submitted with `ttc run`', async (t) => {
  const ms = kustomizeBuild('overlays/cpu');
  const coord = container(ms, 'Deployment', 'ttc-coordinator');
  const worker = container(ms, 'StatefulSet', 'ttc-worker');
  const dir = tempDir('k8s-local');

  // The mounted files and volumes: the Secret, the ConfigMap's run.json, the runs PVC, the cache emptyDir.
  const secretFile = path.join(dir, 'secret');
  fs.writeFileSync(secretFile, crypto.randomBytes(24).toString('base64'));
  const configFile = path.join(dir, 'run.json');
  const configMap = ms.find((m) => m.kind === 'ConfigMap' && m.metadata.name === 'ttc-config') as unknown as { data: Record<string, string> };
  fs.writeFileSync(configFile, configMap.data['run.json']!);
  const runsDir = path.join(dir, 'runs');
  const mapValue = (v: string, ip: string): string =>
    v === '/var/run/secrets/ttc/secret' ? secretFile
    : v === '/var/lib/ttc/runs' ? runsDir
    : v === 'cacheDir=/var/cache/ttc' ? `cacheDir=${TEST_CACHE_DIR}`
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
  t.deepEqual(coord.args.slice(0, 1), ['serve']);
  t.deepEqual(worker.args, ['worker']);
  const coordArgs = coord.args.map((a) => mapValue(a, COORDINATOR_IP));
  t.true(coordArgs.includes(`cacheDir=${TEST_CACHE_DIR}`) && coordArgs.includes(runsDir), 'the volume paths were mapped');

  const clean = { TTC_SECRET: undefined, TTC_SECRET_FILE: undefined, TTC_COORDINATOR: undefined, TTC_HOST: undefined, TTC_PORT: undefined };
  const c = spawnTtcWith(coordArgs, { ...clean, ...envOf(coord, COORDINATOR_IP, 'ttc-coordinator-0') });
  try {
    await c.waitFor(/TTC_COORDINATOR_URL=ws:\/\/127\.0\.0\.10:7070/);
    const workers = [0, 1].map((i) => spawnTtcWith(worker.args, { ...clean, ...envOf(worker, podIp(i), `ttc-worker-${i}`) }));
    // The submission, as from a laptop after `kubectl port-forward` (the secret from the same file).
    // The one change beyond mapping: a budget small enough for a test (the ConfigMap's run takes minutes).
    const submit = spawnTtcWith(['run', '--coordinator', `http://${COORDINATOR_IP}:7070`, '--config', configFile, '--set', 'budget.flops=3e10', '--set', 'train.evalEvery=5'], { ...clean, TTC_SECRET_FILE: secretFile });
    t.is(await submit.exited, 0, [...submit.lines.slice(-10), ...c.lines.slice(-20)].join('\n'));
    t.regex(submit.lines.join('\n'), /run run-\S+ done: final validation loss/);
    const out = c.lines.join('\n');
    t.regex(out, /worker "ttc-worker-0" .* registered/);
    t.regex(out, /worker "ttc-worker-1" .* registered/);
    t.regex(out, /ring of 2 up/);
    // The run got the cluster's settings: the overlay's backend and the mounted cache.
    const runId = submit.lines.map((l) => l.match(/^TTC_RUN_ID=(\S+)/)?.[1]).find(Boolean)!;
    const stored = JSON.parse(fs.readFileSync(path.join(runsDir, runId, 'config.json'), 'utf8'));
    t.is(stored.backend, 'wasm');
    t.is(stored.cacheDir, TEST_CACHE_DIR);
    // Ring peers reached each other at their "pod IPs" on the manifests' ring port.
    t.true(workers.some((w) => w.lines.some((l) => /ring listener on 127\.0\.0\.2[01]:7071/.test(l))));
    for (const w of workers) t.is(w.child.exitCode, null, 'workers wait for the next run');
    for (const w of workers) w.kill();
  } finally {
    c.kill('SIGTERM');
    await c.exited;
  }
});
