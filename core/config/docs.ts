/** Renders the config reference (docs/config.md) from the convict schema, so docs cannot drift. */
import { configSchema } from './schema.ts';

interface Leaf {
  doc: string;
  format: unknown;
  default: unknown;
}

function isLeaf(x: unknown): x is Leaf {
  return typeof x === 'object' && x !== null && 'doc' in x && 'default' in x;
}

function formatName(f: unknown): string {
  if (Array.isArray(f)) return f.map((v) => `\`${v}\``).join(' \\| ');
  if (f === String) return 'string';
  if (f === Boolean) return 'boolean';
  if (f === Array) return 'array of strings';
  if (typeof f === 'function' && 'accepts' in f) return String(f.accepts); // core/config/schema.ts's validators
  if (typeof f === 'function') return f.name;
  return String(f);
}

export function configRows(node: Record<string, unknown> = configSchema as unknown as Record<string, unknown>, prefix = ''): string[][] {
  const rows: string[][] = [];
  for (const [key, value] of Object.entries(node)) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (isLeaf(value)) rows.push([`\`${name}\``, formatName(value.format), `\`${JSON.stringify(value.default)}\``, value.doc]);
    else rows.push(...configRows(value as Record<string, unknown>, name));
  }
  return rows;
}

export function renderConfigDocs(): string {
  const lines = [
    '# Config reference',
    '',
    'Generated from `core/config/schema.ts` by `npm run docs:config`; `tests/config.test.ts` fails when it is out of date.',
    'A run config is a JSON file with any subset of these fields; the rest take their defaults. Unknown fields and',
    'bad values are refused with the field name, the value and what was expected. `--set key=value` overrides one field.',
    '',
    '| field | type | default | meaning |',
    '|---|---|---|---|',
    ...configRows().map((r) => `| ${r.map((c) => c.replace(/\|/g, '\\|').replace(/\\\\\|/g, '\\|')).join(' | ')} |`),
    '',
  ];
  return lines.join('\n');
}

if (process.argv[1]?.endsWith('docs.ts')) process.stdout.write(renderConfigDocs());
