/**
 * A small kustomize-compatible composer for exactly the features k8s/ uses, so tests can check the
 * composed manifests without a kubectl/kustomize binary:
 *   resources (files and directories with a kustomization.yaml), namespace, generatorOptions
 *   (disableNameSuffixHash only), configMapGenerator / secretGenerator with `files` (key=path),
 *   images (name → newName/newTag), patches with an inline JSON 6902 list + target, or a
 *   strategic-merge patch file (maps merged, lists of objects merged by `name`, other lists replaced).
 * It refuses anything else by name rather than silently producing a different result.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseAllDocuments, parse } from 'yaml';

export type Manifest = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; [k: string]: unknown }; [k: string]: unknown };

export interface ComposeOptions {
  /** contents for a generator file that does not exist (e.g. the git-ignored secret.txt in tests) */
  missingFile?: (file: string) => string | undefined;
}

const KNOWN = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'generatorOptions', 'configMapGenerator', 'secretGenerator', 'images', 'patches']);
const CLUSTER_SCOPED = new Set(['Namespace', 'PersistentVolume', 'ClusterRole', 'ClusterRoleBinding', 'StorageClass']);

export function loadYamlFile(file: string): Manifest[] {
  return parseAllDocuments(fs.readFileSync(file, 'utf8'))
    .map((d) => {
      if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
      return d.toJS() as Manifest;
    })
    .filter((m) => m != null);
}

export function compose(dir: string, opts: ComposeOptions = {}): Manifest[] {
  const kfile = path.join(dir, 'kustomization.yaml');
  const k = parse(fs.readFileSync(kfile, 'utf8')) as Record<string, any>;
  for (const key of Object.keys(k)) if (!KNOWN.has(key)) throw new Error(`${kfile}: unsupported field "${key}"`);
  let out: Manifest[] = [];
  for (const r of k.resources ?? []) {
    const p = path.join(dir, r);
    out.push(...(fs.statSync(p).isDirectory() ? compose(p, opts) : loadYamlFile(p)));
  }
  const go = k.generatorOptions ?? {};
  for (const key of Object.keys(go)) if (key !== 'disableNameSuffixHash') throw new Error(`${kfile}: unsupported generatorOptions.${key}`);
  const gen = (g: Record<string, any>, kind: 'ConfigMap' | 'Secret') => {
    if (!go.disableNameSuffixHash) throw new Error(`${kfile}: name-suffix hashes are not modelled; set generatorOptions.disableNameSuffixHash`);
    for (const key of Object.keys(g)) if (!['name', 'files', 'type'].includes(key)) throw new Error(`${kfile}: unsupported generator field ${key}`);
    const data: Record<string, string> = {};
    for (const f of g.files ?? []) {
      const [key, rel] = String(f).includes('=') ? String(f).split('=', 2) : [path.basename(String(f)), String(f)];
      const p = path.join(dir, rel);
      const text = fs.existsSync(p) ? fs.readFileSync(p, 'utf8') : opts.missingFile?.(p);
      if (text === undefined) throw new Error(`${kfile}: ${g.name}: file ${p} does not exist`);
      data[key] = kind === 'Secret' ? Buffer.from(text).toString('base64') : text;
    }
    const m: Manifest = { apiVersion: 'v1', kind, metadata: { name: g.name }, data };
    if (kind === 'Secret') m.type = g.type ?? 'Opaque';
    return m;
  };
  for (const g of k.configMapGenerator ?? []) out.push(gen(g, 'ConfigMap'));
  for (const g of k.secretGenerator ?? []) out.push(gen(g, 'Secret'));
  if (k.namespace) for (const m of out) if (!CLUSTER_SCOPED.has(m.kind)) m.metadata.namespace = k.namespace;
  for (const img of k.images ?? []) {
    for (const c of allContainers(out)) {
      const [name, tag] = splitImage(c.image);
      if (name !== img.name) continue;
      c.image = `${img.newName ?? name}:${img.newTag ?? tag}`;
    }
  }
  for (const p of k.patches ?? []) {
    if (p.path) {
      const docs = loadYamlFile(path.join(dir, p.path));
      for (const patch of docs) {
        const target = out.find((m) => m.kind === patch.kind && m.metadata.name === patch.metadata.name);
        if (!target) throw new Error(`${kfile}: patch ${p.path}: no ${patch.kind} ${patch.metadata.name}`);
        out = out.map((m) => (m === target ? (strategicMerge(m, patch) as Manifest) : m));
      }
    } else if (p.patch && p.target) {
      const ops = parse(p.patch) as Op[];
      if (!Array.isArray(ops)) throw new Error(`${kfile}: inline strategic-merge patches are not modelled; use a JSON 6902 list`);
      const hits = out.filter((m) => m.kind === p.target.kind && m.metadata.name === p.target.name && (!p.target.group || m.apiVersion.startsWith(`${p.target.group}/`)));
      if (hits.length !== 1) throw new Error(`${kfile}: patch target ${JSON.stringify(p.target)} matched ${hits.length} resources`);
      for (const op of ops) applyOp(hits[0], op);
    } else throw new Error(`${kfile}: a patch needs path, or patch + target`);
  }
  return out;
}

function splitImage(image: string): [string, string | undefined] {
  const i = image.lastIndexOf(':');
  return i > image.lastIndexOf('/') && i >= 0 ? [image.slice(0, i), image.slice(i + 1)] : [image, undefined];
}

export function podSpec(m: Manifest): Record<string, any> | undefined {
  return (m.spec as any)?.template?.spec;
}

export function allContainers(ms: Manifest[]): Array<Record<string, any>> {
  return ms.flatMap((m) => [...(podSpec(m)?.containers ?? []), ...(podSpec(m)?.initContainers ?? [])]);
}

function strategicMerge(base: unknown, patch: unknown): unknown {
  if (Array.isArray(base) && Array.isArray(patch)) {
    if (!patch.every((x) => x && typeof x === 'object' && 'name' in x)) return patch;
    const out = [...base];
    for (const item of patch) {
      const i = out.findIndex((b) => b?.name === item.name);
      if (i >= 0) out[i] = strategicMerge(out[i], item);
      else out.push(item);
    }
    return out;
  }
  if (base && patch && typeof base === 'object' && typeof patch === 'object' && !Array.isArray(base) && !Array.isArray(patch)) {
    const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
    for (const [key, v] of Object.entries(patch)) {
      if (v === null) delete out[key];
      else out[key] = key in out ? strategicMerge(out[key], v) : v;
    }
    return out;
  }
  return patch;
}

type Op = { op: 'add' | 'remove' | 'replace'; path: string; value?: unknown };

function applyOp(doc: unknown, op: Op): void {
  const parts = op.path.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  const last = parts.pop()!;
  let parent: any = doc;
  for (const p of parts) {
    parent = Array.isArray(parent) ? parent[Number(p)] : parent?.[p];
    if (parent === undefined) throw new Error(`JSON patch ${op.op} ${op.path}: no such path`);
  }
  if (Array.isArray(parent)) {
    const i = last === '-' ? parent.length : Number(last);
    if (op.op === 'add') parent.splice(i, 0, op.value);
    else if (i >= parent.length) throw new Error(`JSON patch ${op.op} ${op.path}: no such index`);
    else if (op.op === 'remove') parent.splice(i, 1);
    else parent[i] = op.value;
    return;
  }
  if (op.op !== 'add' && !(last in parent)) throw new Error(`JSON patch ${op.op} ${op.path}: no such path`);
  if (op.op === 'remove') delete parent[last];
  else if (op.op === 'add' || op.op === 'replace') parent[last] = op.value;
  else throw new Error(`JSON patch: unsupported op ${(op as Op).op}`);
}
