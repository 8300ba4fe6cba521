/**
 * The project's real import graph, read with the TypeScript compiler's own pre-processor (static
 * imports, `export … from`, `import type` and dynamic `import('…')` with a literal specifier), and
 * the layer rules it must keep (README "Architecture"): a module may import its own folder and any
 * layer below its own, never one above it or a sibling; code outside collective/ reaches the
 * collective library only through collective/index.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

export interface ImportEdge {
  from: string;
  /** a repository path for relative imports, the package name otherwise */
  to: string;
  external: boolean;
  /** only types: erased at run time */
  typeOnly: boolean;
}

/** Source folders of the product, in the order they may import each other (lower first). */
export const LAYERS: ReadonlyArray<{ layer: string; rank: number }> = [
  { layer: 'core/errors.ts', rank: 0 }, { layer: 'core/rng.ts', rank: 0 }, { layer: 'core/pace.ts', rank: 0 },
  // fs.ts raises a coded error (a full disk)
  { layer: 'core/fs.ts', rank: 1 }, { layer: 'core/config', rank: 1 },
  { layer: 'core/run', rank: 2 },
  { layer: 'wire/protocol', rank: 10 }, { layer: 'wire/auth.ts', rank: 11 }, { layer: 'wire/net', rank: 12 },
  { layer: 'collective', rank: 20 },
  { layer: 'ml/tf.ts', rank: 29 }, { layer: 'ml/kernels', rank: 30 }, { layer: 'ml/backend.ts', rank: 31 }, { layer: 'ml/webgpu-access.ts', rank: 31 },
  { layer: 'ml/model', rank: 32 }, { layer: 'ml/flops.ts', rank: 33 },
  { layer: 'ml/data', rank: 34 },
  { layer: 'ml/checkpoint', rank: 35 },
  { layer: 'ml/train', rank: 36 },
  { layer: 'ml/tasks', rank: 37 }, { layer: 'ml/export', rank: 37 },
  { layer: 'ml/loop', rank: 38 },
  { layer: 'compression/eval', rank: 41 }, { layer: 'compression', rank: 40 },
  { layer: 'report', rank: 50 },
  { layer: 'protocol', rank: 60 },
  { layer: 'worker', rank: 70 }, { layer: 'coordinator', rank: 70 },
  { layer: 'cli', rank: 80 },
];

/** The layer a repository path belongs to: the longest matching entry of LAYERS, or undefined (tests, bench, bin). */
export function layerOf(file: string, layers = LAYERS): { layer: string; rank: number } | undefined {
  let best: { layer: string; rank: number } | undefined;
  for (const l of layers) {
    const hit = file === l.layer || file.startsWith(`${l.layer}/`);
    if (hit && (!best || l.layer.length > best.layer.length)) best = l;
  }
  return best;
}

/** Every `.ts` file under the given top-level folders (repository-relative, '/' separated). */
export function sourceFiles(root: string, folders: string[]): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const p = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|mts)$/.test(e.name)) out.push(p);
    }
  };
  for (const f of folders) if (fs.existsSync(path.join(root, f))) walk(f);
  return out.sort();
}

/** The imports of one file, relative ones resolved to repository paths. */
export function importsOf(root: string, file: string, text = fs.readFileSync(path.join(root, file), 'utf8')): ImportEdge[] {
  const info = ts.preProcessFile(text, true, true);
  const typeOnly = new Set<string>();
  // preProcessFile does not say which imports are type-only: read that off the statements.
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false);
  for (const st of sf.statements) {
    if ((ts.isImportDeclaration(st) && st.importClause?.isTypeOnly) || (ts.isExportDeclaration(st) && st.isTypeOnly)) {
      const spec = st.moduleSpecifier;
      if (spec && ts.isStringLiteral(spec)) typeOnly.add(spec.text);
    }
  }
  return info.importedFiles.map((f) => {
    const external = !f.fileName.startsWith('.');
    const to = external ? packageName(f.fileName) : path.posix.normalize(path.posix.join(path.posix.dirname(file), f.fileName));
    return { from: file, to, external, typeOnly: typeOnly.has(f.fileName) };
  });
}

function packageName(spec: string): string {
  if (spec.startsWith('node:')) return spec;
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

export function importGraph(root: string, folders: string[]): ImportEdge[] {
  return sourceFiles(root, folders).flatMap((f) => importsOf(root, f));
}

/** The edges that break the layer rules, each with the reason. */
export function layerViolations(edges: ImportEdge[], layers = LAYERS): string[] {
  const out: string[] = [];
  for (const e of edges) {
    if (e.external) continue;
    const from = layerOf(e.from, layers);
    const to = layerOf(e.to, layers);
    if (!to) {
      if (from) out.push(`${e.from} imports ${e.to}, which is outside the product's layers (tests/, bench/?)`);
      continue;
    }
    if (e.to.startsWith('collective/') && e.to !== 'collective/index.ts' && !e.from.startsWith('collective/')) {
      out.push(`${e.from} imports ${e.to}: outside collective/, use its public interface collective/index.ts`);
    }
    if (!from || from.layer === to.layer) continue;
    if (to.rank > from.rank) out.push(`${e.from} (${from.layer}) imports ${e.to} (${to.layer}), a layer above it`);
    else if (to.rank === from.rank) out.push(`${e.from} (${from.layer}) imports ${e.to} (${to.layer}), a sibling layer`);
  }
  return out;
}

/** Every repository file reachable from `entry` through imports that exist at run time (type-only imports are erased; packages are not followed). */
export function runtimeClosure(edges: ImportEdge[], entry: string): Set<string> {
  const byFrom = new Map<string, ImportEdge[]>();
  for (const e of edges) byFrom.set(e.from, [...(byFrom.get(e.from) ?? []), e]);
  const seen = new Set<string>();
  const visit = (f: string) => {
    if (seen.has(f)) return;
    seen.add(f);
    for (const e of byFrom.get(f) ?? []) if (!e.typeOnly && !e.external) visit(e.to);
  };
  visit(entry);
  return seen;
}
