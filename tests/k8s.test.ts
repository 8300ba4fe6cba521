/**
 * k8s/: the kustomize base and overlays, composed by the real `kustomize build` (tests/kit/kustomize.ts;
 * and by kubectl's own kustomize where a kubectl is on PATH), validate against the Kubernetes schemas
 * (kubernetes-models), agree with the CLI (container args parsed by each command's own parseArgs
 * options, env vars read by that command, ports) and with each other; the ConfigMap is configs/; the
 * Dockerfiles lint clean (dockerfile-utils) and follow the rules (pinned base, npm ci, non-root,
 * real ttc entrypoint).
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { DockerfileParser, Copy } from 'dockerfile-ast';
import { validate as validateDockerfile } from 'dockerfile-utils';
import { Namespace, Secret, ConfigMap, Service, PersistentVolume, PersistentVolumeClaim } from 'kubernetes-models/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { parse } from 'yaml';
import { commands } from '../cli/main.ts';
import { serveOptions } from '../cli/commands/serve.ts';
import { coordinatorOptions } from '../cli/commands/coordinator.ts';
import { workerOptions } from '../cli/commands/worker.ts';
import { tryLoadSecret } from '../wire/auth.ts';
import { loadConfig } from '../core/config/load.ts';
import { loadSweepConfig } from '../coordinator/sweep-config.ts';
import { tlsClientFromEnv, tlsServerFromEnv } from '../wire/net/tls-env.ts';
import { importGraph, runtimeClosure } from './kit/imports.ts';
import { kubectlOnPath, kustomizeBuild, kustomizeBuildText, allContainers, podSpec, TEST_SECRET, type Manifest } from './kit/kustomize.ts';

const root = path.resolve(import.meta.dirname, '..');
const k8s = path.join(root, 'k8s');
const RING = 7071;
const COORD = 7070;
const overlays = ['cuda', 'webgpu', 'cpu', 'ci'];
/** Overlays without GPUs: the webgpu image on the wasm backend. */
const cpuOnly = new Set(['cpu', 'ci']);
// the real secret.txt is git-ignored; kustomizeBuild uses a stand-in of the required length
const sets: Record<string, Manifest[]> = { base: kustomizeBuild('base') };
for (const o of overlays) sets[o] = kustomizeBuild(`overlays/${o}`);

const models: Record<string, new (m: any) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/Secret': Secret,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/PersistentVolume': PersistentVolume,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
};

const one = (ms: Manifest[], kind: string, name: string) => {
  const m = ms.find((x) => x.kind === kind && x.metadata.name === name);
  if (!m) throw new Error(`no ${kind} ${name}`);
  return m as Manifest & { spec: any };
};
const container = (ms: Manifest[], kind: string, name: string) => podSpec(one(ms, kind, name))!.containers[0];
const envOf = (c: any) => Object.fromEntries((c.env ?? []).map((e: any) => [e.name, e.value ?? e.valueFrom]));

// The CLI as it really parses: the commands containers may run, each with the parseArgs options its
// command uses (strict: an unknown flag throws), and the environment variables the command reads,
// found by running the option builders and env readers on an environment that records every read.
const cliCommands = new Set(Object.keys(commands));
const commandOptions: Record<string, (env: NodeJS.ProcessEnv) => NonNullable<ParseArgsConfig['options']>> = {
  serve: serveOptions,
  worker: workerOptions,
  coordinator: coordinatorOptions,
};
const envReads = (...readers: Array<(env: NodeJS.ProcessEnv) => unknown>): Set<string> => {
  const seen = new Set<string>();
  for (const answer of [undefined, 'x']) {
    const env = new Proxy({} as NodeJS.ProcessEnv, { get: (_, k) => (typeof k === 'string' && k.startsWith('TTC_') && seen.add(k), answer) });
    for (const read of readers) {
      try {
        read(env);
      } catch {
        // 'x' is not a usable secret or TLS pair; only the names read matter here
      }
    }
  }
  return seen;
};
const commonEnv = envReads(tryLoadSecret, tlsServerFromEnv, tlsClientFromEnv);
const commandEnv = (cmd: string) => new Set([...commonEnv, ...envReads(commandOptions[cmd])]);
/** Parses a container's `ttc` arguments with the command's own parser; throws on an unknown command or flag. */
const parseTtcArgs = (args: string[]) => {
  const [cmd, ...rest] = args;
  if (!commandOptions[cmd]) throw new Error(`ttc ${cmd}: not a command a pod runs`);
  return { cmd, values: parseArgs({ args: rest, options: commandOptions[cmd]({}), strict: true, allowPositionals: false }).values };
};

for (const [name, ms] of Object.entries(sets)) {
  test(`${name}: every manifest validates against the Kubernetes schema of its kind`, (t) => {
    t.true(ms.length >= 10);
    for (const m of ms) {
      const Model = models[`${m.apiVersion}/${m.kind}`];
      t.truthy(Model, `no schema model for ${m.apiVersion} ${m.kind}`);
      t.notThrows(() => new Model(m).validate(), `${m.kind} ${m.metadata.name}`);
      // cluster-scoped: the Namespace, and the ci overlay's hostPath PersistentVolume
      if (m.kind === 'Namespace' || m.kind === 'PersistentVolume') t.is(m.metadata.namespace, undefined, `${m.kind} ${m.metadata.name} is cluster-scoped`);
      else t.is(m.metadata.namespace, 'ttc', `${m.kind} ${m.metadata.name} namespace`);
    }
    const kinds = new Set(ms.map((m) => m.kind));
    for (const k of ['Namespace', 'Secret', 'ConfigMap', 'Deployment', 'Service', 'PersistentVolumeClaim', 'StatefulSet', 'NetworkPolicy']) t.true(kinds.has(k), k);
  });

  test(`${name}: env vars, flags and commands exist in the CLI; the required ones are set`, (t) => {
    for (const c of allContainers(ms)) {
      t.true(cliCommands.has(c.args[0]), `ttc ${c.args[0]} is a ttc command`);
      let cmd: string;
      try {
        cmd = parseTtcArgs(c.args).cmd;
      } catch (e) {
        t.fail(`${c.name}: ttc ${c.args.join(' ')}: ${(e as Error).message}`);
        continue;
      }
      const known = commandEnv(cmd);
      for (const e of c.env ?? []) if (e.name.startsWith('TTC_')) t.true(known.has(e.name), `${e.name} is not read by ttc ${cmd}`);
      const env = envOf(c);
      t.is(env.TTC_SECRET_FILE, '/var/run/secrets/ttc/secret', `${c.name}: TTC_SECRET_FILE`);
      const mount = c.volumeMounts.find((v: any) => v.mountPath === '/var/run/secrets/ttc');
      const vol = podSpec(ms.find((m) => podSpec(m)?.containers.includes(c))!)!.volumes.find((v: any) => v.name === mount.name);
      t.is(vol.secret.secretName, 'ttc-secret');
      const secret = one(ms, 'Secret', 'ttc-secret');
      t.true(Buffer.from((secret as any).data.secret, 'base64').length >= 16);
    }
    const co = container(ms, 'Deployment', 'ttc-coordinator');
    t.deepEqual(co.args.slice(0, 9), ['serve', '--host', '0.0.0.0', '--port', String(COORD), '--output-dir', '/var/lib/ttc/runs', '--set', 'cacheDir=/var/cache/ttc']);
    const w = envOf(container(ms, 'StatefulSet', 'ttc-worker'));
    t.is(w.TTC_COORDINATOR, `ws://ttc-coordinator:${COORD}`);
    t.is(w.TTC_LISTEN_HOST, '0.0.0.0');
    t.is(w.TTC_RING_PORT, String(RING));
    t.deepEqual(w.TTC_ADVERTISE_HOST, { fieldRef: { fieldPath: 'status.podIP' } });
    t.deepEqual(w.TTC_WORKER_NAME, { fieldRef: { fieldPath: 'metadata.name' } });
  });

  test(`${name}: the run config, with the server's settings for every run, is valid and lives where the volumes are`, (t) => {
    const cm = one(ms, 'ConfigMap', 'ttc-config') as any;
    const co = container(ms, 'Deployment', 'ttc-coordinator');
    const file = path.join(fs.mkdtempSync(path.join(root, 'scratch-k8s-')), 'run.json');
    try {
      fs.writeFileSync(file, cm.data['run.json']);
      // What a submitted run gets on this server: its --set settings and --output-dir.
      const sets = co.args.flatMap((a: string, i: number) => (co.args[i - 1] === '--set' ? [a.split('=')] : []));
      const outputDir = co.args[co.args.indexOf('--output-dir') + 1];
      const config = loadConfig(file, { ...Object.fromEntries(sets), outputDir });
      const mounts = co.volumeMounts.map((v: any) => v.mountPath);
      t.true(mounts.includes('/etc/ttc'), 'the run config is mounted for in-cluster `ttc run`');
      t.true(mounts.includes(config.outputDir), `outputDir ${config.outputDir} is mounted`);
      t.true(mounts.includes(config.cacheDir), `cacheDir ${config.cacheDir} is mounted`);
      const wMounts = container(ms, 'StatefulSet', 'ttc-worker').volumeMounts.map((v: any) => v.mountPath);
      t.true(wMounts.includes(config.cacheDir), 'workers have the cacheDir');
      const runsVol = podSpec(one(ms, 'Deployment', 'ttc-coordinator'))!.volumes.find((v: any) => v.name === co.volumeMounts.find((m: any) => m.mountPath === config.outputDir).name);
      t.is(runsVol.persistentVolumeClaim.claimName, 'ttc-runs');
      t.is(one(ms, 'StatefulSet', 'ttc-worker').spec.replicas, config.dist.minWorkers);
      const expected: string | undefined = ({ base: 'auto', cuda: 'tensorflow', webgpu: 'webgpu', cpu: 'wasm', ci: 'wasm' } as Record<string, string>)[name];
      t.is(config.backend as string, expected);
    } finally {
      fs.rmSync(path.dirname(file), { recursive: true, force: true });
    }
  });

  test(`${name}: ports agree across Services, containers, probes and NetworkPolicies`, (t) => {
    const co = container(ms, 'Deployment', 'ttc-coordinator');
    t.deepEqual(co.ports.map((p: any) => p.containerPort), [COORD]);
    t.deepEqual([co.readinessProbe.httpGet.path, co.readinessProbe.httpGet.port], ['/readyz', COORD]);
    t.deepEqual([co.livenessProbe.httpGet.path, co.livenessProbe.httpGet.port], ['/healthz', COORD]);
    const cs = one(ms, 'Service', 'ttc-coordinator').spec;
    t.deepEqual(cs.ports.map((p: any) => [p.port, p.targetPort]), [[COORD, COORD]]);
    const deploy = one(ms, 'Deployment', 'ttc-coordinator');
    t.is(deploy.spec.replicas, 1);
    t.deepEqual(cs.selector, deploy.spec.template.metadata.labels);

    const w = container(ms, 'StatefulSet', 'ttc-worker');
    t.deepEqual(w.ports.map((p: any) => p.containerPort), [RING]);
    t.falsy(w.readinessProbe, 'a worker serves no HTTP; the ring port is open only inside a ring');
    t.truthy(w.livenessProbe.exec);
    const sts = one(ms, 'StatefulSet', 'ttc-worker');
    const ws = one(ms, 'Service', sts.spec.serviceName).spec;
    t.is(ws.clusterIP, 'None');
    t.deepEqual(ws.ports.map((p: any) => [p.port, p.targetPort]), [[RING, RING]]);
    t.deepEqual(ws.selector, sts.spec.template.metadata.labels);

    const ring = one(ms, 'NetworkPolicy', 'ttc-worker-ring').spec;
    t.deepEqual(ring.podSelector.matchLabels, sts.spec.template.metadata.labels);
    t.deepEqual(ring.ingress.flatMap((r: any) => r.ports.map((p: any) => p.port)), [RING]);
    t.deepEqual(ring.ingress.flatMap((r: any) => r.from.map((f: any) => f.podSelector.matchLabels)), [sts.spec.template.metadata.labels]);
    const cp = one(ms, 'NetworkPolicy', 'ttc-coordinator').spec;
    t.deepEqual(cp.podSelector.matchLabels, deploy.spec.template.metadata.labels);
    t.deepEqual(cp.ingress.flatMap((r: any) => r.ports.map((p: any) => p.port)), [COORD]);
    t.deepEqual(cp.ingress.flatMap((r: any) => r.from.map((f: any) => f.podSelector.matchLabels)), [sts.spec.template.metadata.labels, { 'ttc-cli': 'true' }]);
  });

  test(`${name}: pods run as non-root with read-only root filesystems; GPU limits as the overlay says`, (t) => {
    for (const m of ms.filter((x) => podSpec(x))) {
      const spec = podSpec(m)!;
      t.true(spec.securityContext.runAsNonRoot, m.metadata.name);
      t.not(spec.securityContext.runAsUser, 0);
      for (const c of spec.containers) {
        t.true(c.securityContext.readOnlyRootFilesystem, c.name);
        t.false(c.securityContext.allowPrivilegeEscalation, c.name);
        t.true(c.volumeMounts.some((v: any) => v.mountPath === '/tmp'), `${c.name}: writable /tmp`);
      }
    }
    const limits = container(ms, 'StatefulSet', 'ttc-worker').resources.limits;
    if (cpuOnly.has(name)) t.is(limits['nvidia.com/gpu'], undefined);
    else t.is(limits['nvidia.com/gpu'], 1);
    t.is(container(ms, 'Deployment', 'ttc-coordinator').resources.limits['nvidia.com/gpu'], undefined);
    const images = Object.fromEntries(allContainers(ms).map((c) => [c.name, c.image]));
    if (name !== 'base') t.is(images.worker, `ttc-worker-${cpuOnly.has(name) ? 'webgpu' : name}:0.1.0`);
    const caps = envOf(container(ms, 'StatefulSet', 'ttc-worker')).NVIDIA_DRIVER_CAPABILITIES;
    if (name === 'webgpu') t.true(String(caps).split(',').includes('graphics'));
  });
}

const cpuOf = (q: string) => (q.endsWith('m') ? Number(q.slice(0, -1)) / 1000 : Number(q));
const gibOf = (q: string) => Number(q.replace(/(Mi|Gi)$/, '')) / (q.endsWith('Mi') ? 1024 : 1);
const requestsOf = (ms: Manifest[]) => {
  const co = container(ms, 'Deployment', 'ttc-coordinator').resources.requests;
  const w = container(ms, 'StatefulSet', 'ttc-worker').resources.requests;
  const n = one(ms, 'StatefulSet', 'ttc-worker').spec.replicas as number;
  return { co, w, n, cpu: cpuOf(co.cpu) + n * cpuOf(w.cpu), gib: gibOf(co.memory) + n * gibOf(w.memory) };
};

test('ci: a coordinator and its workers fit a small node (what npm run test:cluster schedules on 2 cores)', (t) => {
  const r = requestsOf(sets.ci);
  t.true(r.cpu <= 1, `${r.cpu} CPUs requested`);
  t.true(r.gib <= 2, `${r.gib} GiB requested`);
  const w = container(sets.ci, 'StatefulSet', 'ttc-worker').resources;
  t.is(w.limits.cpu, undefined, 'no CPU limit: the workers use the idle cores');
  t.true(gibOf(w.limits.memory) >= gibOf(w.requests.memory));
});

test('ci: the runs claim binds the hostPath PersistentVolume by name, no StorageClass; the test script prepares its directory', (t) => {
  const pv = one(sets.ci, 'PersistentVolume', 'ttc-runs-hostpath').spec;
  const pvc = one(sets.ci, 'PersistentVolumeClaim', 'ttc-runs').spec;
  t.deepEqual(pv.claimRef, { namespace: 'ttc', name: 'ttc-runs' });
  t.is(pvc.volumeName, 'ttc-runs-hostpath');
  t.is(pv.storageClassName, '');
  t.is(pvc.storageClassName, '');
  t.deepEqual(pv.accessModes, pvc.accessModes);
  t.true(gibOf(pv.capacity.storage) >= gibOf(pvc.resources.requests.storage));
  t.is(pv.persistentVolumeReclaimPolicy, 'Retain');
  const script = fs.readFileSync(path.join(root, 'tests', 'cluster', 'test-cluster.sh'), 'utf8');
  t.regex(script, new RegExp(`^PV_DIR=${pv.hostPath.path.replace(/[/.]/g, '\\$&')}\\s`, 'm'));
  t.regex(script, /chown 10001:10001 "\$PV_DIR"/, 'hostPath volumes get no fsGroup: the directory is the pods\' uid\'s');
  // the other overlays leave storage to the cluster's default StorageClass
  for (const o of ['cuda', 'webgpu', 'cpu']) {
    t.falsy(sets[o].find((m) => m.kind === 'PersistentVolume'), o);
    t.is(one(sets[o], 'PersistentVolumeClaim', 'ttc-runs').spec.storageClassName, undefined, o);
  }
});

test('docs/kubernetes.md states every overlay\'s requests as the manifests set them', (t) => {
  const doc = fs.readFileSync(path.join(root, 'docs', 'kubernetes.md'), 'utf8');
  for (const o of overlays) {
    const row = doc.split('\n').find((l) => l.startsWith(`| \`${o}\``));
    t.truthy(row, `a row for ${o}`);
    const r = requestsOf(sets[o]);
    t.true(row!.includes(`${r.w.cpu} CPU, ${r.w.memory}`), `${o} workers: ${r.w.cpu} CPU, ${r.w.memory} in: ${row}`);
    t.true(row!.includes(`${r.co.cpu} CPU, ${r.co.memory}`), `${o} coordinator: ${r.co.cpu} CPU, ${r.co.memory} in: ${row}`);
  }
});

test('the ConfigMap ttc-config is configs/ itself: cluster.json as run.json and sweep.json, byte for byte, and both are valid', (t) => {
  const kz = parse(fs.readFileSync(path.join(root, 'configs', 'kustomization.yaml'), 'utf8')) as { configMapGenerator: Array<{ name: string; files: string[] }> };
  const files = kz.configMapGenerator.find((g) => g.name === 'ttc-config')!.files.map((f) => (f.includes('=') ? f.split('=') : [f, f]) as [string, string]);
  t.deepEqual(files.map(([key]) => key).sort(), ['run.json', 'sweep.json']);
  for (const name of Object.keys(sets)) {
    const data = (one(sets[name]!, 'ConfigMap', 'ttc-config') as any).data as Record<string, string>;
    t.deepEqual(Object.keys(data).sort(), ['run.json', 'sweep.json'], name);
    for (const [key, file] of files) t.is(data[key], fs.readFileSync(path.join(root, 'configs', file), 'utf8'), `${name}: ${key} = configs/${file}`);
  }
  t.notThrows(() => loadConfig(path.join(root, 'configs', 'cluster.json')));
  t.notThrows(() => loadSweepConfig(path.join(root, 'configs', 'sweep.json')));
});

const kubectl = kubectlOnPath();
const kubectlVersion = kubectl ? execFileSync(kubectl, ['version', '--client'], { encoding: 'utf8' }).split('\n')[0]!.trim() : '';
if (kubectl) {
  test(`\`kubectl apply -k\`'s own kustomize (${kubectlVersion}) composes every overlay exactly as kustomize 4.5.4 does`, (t) => {
    for (const target of ['base', ...overlays.map((o) => `overlays/${o}`)]) t.is(kustomizeBuildText(target, { kubectl }), kustomizeBuildText(target), target);
  });
} else {
  test.skip('skipped: no kubectl on PATH to compare `kubectl kustomize` with kustomize 4.5.4', () => {});
}

test('the build refuses to run without k8s/base/secret.txt (no Secret is ever composed empty), and takes the real one', (t) => {
  t.throws(() => kustomizeBuildText('overlays/cuda', { secret: null }), { message: /secret\.txt/ });
  const mine = 'another-secret-with-32-bytes-000';
  const secret = kustomizeBuild('overlays/cuda', { secret: mine }).find((m) => m.kind === 'Secret')! as any;
  t.is(Buffer.from(secret.data.secret, 'base64').toString(), mine);
  t.is(Buffer.from((one(sets.cuda, 'Secret', 'ttc-secret') as any).data.secret, 'base64').toString(), TEST_SECRET);
});

// ---- Dockerfiles: parsed by dockerfile-ast, linted by dockerfile-utils (the VS Code Docker extension's validator) ----
const sourceFolders = [...new Set([...runtimeClosure(importGraph(root, ['cli', 'coordinator', 'worker', 'protocol', 'collective', 'compression', 'report', 'ml', 'wire', 'core']), 'cli/main.ts')].map((f) => f.split('/')[0]!))].sort();
for (const f of ['Dockerfile.coordinator', 'Dockerfile.worker-cuda', 'Dockerfile.worker-webgpu']) {
  test(`${f}: lints clean; pinned bases, npm ci, non-root user before the ttc entrypoint`, (t) => {
    const text = fs.readFileSync(path.join(k8s, 'docker', f), 'utf8');
    t.deepEqual(validateDockerfile(text).map((d) => `line ${d.range.start.line + 1}: ${d.message}`), []);
    const dockerfile = DockerfileParser.parse(text);
    const ins = dockerfile.getInstructions().map((i) => ({ op: i.getKeyword(), args: i.getArgumentsContent() ?? '', flags: i instanceof Copy ? i.getFlags().map((x) => x.getName()) : [] }));
    const stages = new Set<string>();
    for (const from of dockerfile.getFROMs()) {
      const image = from.getImage() ?? '';
      if (!stages.has(image)) {
        t.truthy(from.getImageTag(), `${image} has an explicit tag`);
        t.notRegex(image, /:(latest|lts|current|20|bookworm-slim)$/, `${image} is pinned to an exact version`);
      }
      const alias = from.getBuildStage();
      if (alias) stages.add(alias);
    }
    const runs = ins.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');
    t.regex(runs, /\bnpm ci\b/);
    t.notRegex(runs, /\bnpm (install|i)\b/);
    const entry = ins.findIndex((i) => i.op === 'ENTRYPOINT');
    t.true(entry > 0);
    t.deepEqual(JSON.parse(ins[entry].args), ['node', 'bin/ttc.mjs']);
    const lastFrom = ins.map((i) => i.op).lastIndexOf('FROM');
    const users = ins.slice(lastFrom).filter((i, k) => i.op === 'USER' && lastFrom + k < entry);
    t.true(users.length > 0, 'USER in the final stage before ENTRYPOINT');
    const user = users.at(-1)!.args.split(':')[0];
    t.false(['root', '0'].includes(user), `USER ${user}`);
    const cmd = ins.find((i) => i.op === 'CMD');
    if (cmd) {
      const args = JSON.parse(cmd.args) as string[];
      t.notThrows(() => parseTtcArgs(args), `CMD ttc ${args.join(' ')}`);
      for (const a of args.filter((x) => /^configs\//.test(x))) t.true(fs.existsSync(path.join(root, a)), a);
      const envNames = dockerfile.getENVs().flatMap((e) => e.getProperties().map((p) => p.getName()));
      for (const e of envNames.filter((n) => n.startsWith('TTC_'))) t.true(commandEnv(args[0]).has(e), `ENV ${e} is not read by ttc ${args[0]}`);
    }
    const copied = new Set<string>();
    for (const copy of ins.filter((i) => i.op === 'COPY' && !i.flags.includes('from'))) {
      for (const src of copy.args.split(/\s+/).slice(0, -1)) {
        t.true(fs.existsSync(path.join(root, src)), `COPY ${src}`);
        copied.add(src.replace(/\/$/, ''));
      }
    }
    // Every source folder the `ttc` command can load (its import closure, lazily loaded commands included) is in the image.
    for (const folder of sourceFolders) t.true(copied.has(folder), `${f} copies ${folder}/ (ttc imports it)`);
    if (f.includes('cuda')) t.true(ins.some((i) => i.op === 'FROM' && /^nvidia\/cuda:11\.2\.\d+-cudnn8-runtime-ubuntu\d+\.\d+$/.test(i.args)));
    if (f.includes('webgpu')) t.regex(runs, /libvulkan1/);
  });
}
