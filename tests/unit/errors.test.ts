/**
 * Error codes (core/errors.ts): docs/errors.md lists exactly the codes the code has, every code is
 * raised somewhere, and no error class of the product escapes the coded hierarchy.
 */
import test from 'ava';
import fs from 'node:fs';
import { ERROR_CODES, isTtcError, TtcError, UsageError } from '../../core/errors.ts';
import { sourceFiles } from '../kit/imports.ts';

const PRODUCT = ['core', 'wire', 'collective', 'ml', 'compression', 'report', 'protocol', 'worker', 'coordinator', 'cli'];
const sources = sourceFiles(process.cwd(), PRODUCT).map((f) => ({ f, text: fs.readFileSync(f, 'utf8') }));

test('docs/errors.md lists every code with its meaning, and nothing else', (t) => {
  const rows = [...fs.readFileSync('docs/errors.md', 'utf8').matchAll(/^\| `(TTC_ERR_\w+)` \| (.*) \|$/gm)].map((m) => [m[1], m[2]]);
  t.deepEqual(Object.fromEntries(rows), { ...ERROR_CODES });
});

test('every code is raised somewhere in the product', (t) => {
  // every source file, the table of codes itself left out
  const all = sources.map((s) => (s.f === 'core/errors.ts' ? s.text.replace(/export const ERROR_CODES = \{[\s\S]*?\n\} as const;/, '') : s.text)).join('\n');
  t.deepEqual(Object.keys(ERROR_CODES).filter((c) => !all.includes(`'${c}'`)), []);
});

test('no product error class extends Error directly (each has a code)', (t) => {
  t.deepEqual(sources.filter((s) => /class (?!TtcError\b)\w+ extends Error\b/.test(s.text)).map((s) => s.f), []);
});

test('isTtcError: coded errors only', (t) => {
  t.true(isTtcError(new UsageError('x')));
  t.true(isTtcError(new TtcError('TTC_ERR_DATA', 'x')));
  t.false(isTtcError(new Error('x')));
  t.false(isTtcError(Object.assign(new Error('x'), { code: 'ENOENT' })));
  t.false(isTtcError({ code: 'TTC_ERR_DATA', message: 'not an Error' }));
  t.is(new UsageError('x').name, 'UsageError');
});
