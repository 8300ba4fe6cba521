/**
 * The careless user, command by command: missing, unknown and repeated flags, values that are no
 * numbers, ports in use, paths that are missing, files instead of directories, corrupt JSON, bad
 * URLs, unusable secrets and TLS files. Each must end in one line naming the thing (a usage error
 * adds the command's usage below it), a non-zero exit status, no stack trace and no run directory.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { tempDir, TEST_CACHE_DIR, TINY_MODEL } from './kit/helpers.ts';
import { scaled } from './kit/time-scale.mjs';

interface Fixtures {
  dir: string;
  /** a plain file */
  file: string;
  emptyDir: string;
  /** a run directory whose config.json is cut short, and one whose config.json is empty */
  truncatedRun: string;
  emptyConfigRun: string;
  /** a config file that is not JSON (two lines), and an empty one */
  garbage: string;
  empty: string;
  /** a sweep directory whose sweep.json is cut short */
  truncatedSweep: string;
  /** a loopback port some other process listens on */
  busyPort: number;
}

interface Case {
  /** `out`: where this case's runs would go (its `good` config's outputDir) */
  args: (f: Fixtures, k: { out: string; good: string }) => string[];
  /** the message after "ttc <command>: " */
  error: RegExp;
  /** a usage error: the message, a blank line, then the command's usage */
  usage?: true;
  env?: (f: Fixtures) => Record<string, string>;
}

const cases: Record<string, Case> = {
  'train --resume a directory without config.json': { args: (f) => ['train', '--resume', f.emptyDir], error: /is not a ttc run directory \(no config\.json\)$/ },
  'train --resume a file': { args: (f) => ['train', '--resume', f.file], error: /is not a ttc run directory \(no config\.json\)$/ },
  'train --resume a run whose config.json is cut short': { args: (f) => ['train', '--resume', f.truncatedRun], error: /config\.json is not valid JSON \(.*\): not a usable ttc run directory$/ },
  'train --resume a run whose config.json is empty': { args: (f) => ['train', '--resume', f.emptyConfigRun], error: /config\.json is not valid JSON \(Unexpected end of JSON input\)/ },
  'train --config a directory': { args: (f) => ['train', '--config', f.emptyDir], error: /^cannot read config file .*EISDIR/ },
  'train --config a file that is not JSON': { args: (f) => ['train', '--config', f.garbage], error: /^config file .*garbage\.json is not valid JSON: / },
  'train --config an empty file': { args: (f) => ['train', '--config', f.empty], error: /is not valid JSON: Unexpected end of JSON input$/ },
  'train --config without its value': { args: () => ['train', '--config'], error: /^Option '--config <value>' argument missing$/, usage: true },
  'train --config given twice': { args: (f, k) => ['train', '--config', k.good, '--config', k.good], error: /^--config is given more than once$/, usage: true },
  'train with an unknown flag': { args: (f, k) => ['train', '--config', k.good, '--frobnicate'], error: /^Unknown option '--frobnicate'/, usage: true },
  'train --set without key=value': { args: (f, k) => ['train', '--config', k.good, '--set', 'seed'], error: /^--set expects key=value/ },
  'train with outputDir a file': { args: (f, k) => ['train', '--config', k.good, '--set', `outputDir=${f.file}`], error: /^cannot create the run directory .* \(outputDir .*\): ENOTDIR$/ },
  'local --workers not a number': { args: (f, k) => ['local', '--workers', 'two', '--config', k.good, '--set', `outputDir=${k.out}`], error: /^--workers: expected an integer 1\.\.64, got "two"$/ },
  'local --resume a run whose config.json is cut short': { args: (f) => ['local', '--workers', '1', '--resume', f.truncatedRun], error: /config\.json is not valid JSON/ },
  'sweep --resume a directory without sweep.json': { args: (f) => ['sweep', '--resume', f.emptyDir], error: /is not a sweep directory \(no sweep\.json\)$/ },
  'sweep --resume a sweep whose sweep.json is cut short': { args: (f) => ['sweep', '--resume', f.truncatedSweep], error: /sweep\.json is not valid JSON: / },
  'sweep --config a missing file': { args: (f) => ['sweep', '--config', path.join(f.dir, 'missing.json')], error: /^cannot read config file .*ENOENT/ },
  'evaluate without --sweep': { args: () => ['evaluate'], error: /^--sweep is required$/, usage: true },
  'evaluate --sweep a missing directory': { args: (f) => ['evaluate', '--sweep', path.join(f.dir, 'missing')], error: /is not a sweep directory \(no sweep\.json\)$/ },
  'export --run a directory without checkpoints': { args: (f, k) => ['export', '--run', f.emptyDir, '--out', k.out], error: /has no checkpoint$/ },
  'export --checkpoint a missing directory': { args: (f, k) => ['export', '--checkpoint', path.join(f.dir, 'missing'), '--out', k.out], error: /is not a checkpoint: cannot read config\.json \(ENOENT\)$/ },
  'export --out an existing file': { args: (f, k) => ['export', '--run', f.emptyDir, '--out', f.file], error: /^--out .*: exists and is not a directory$/ },
  'coordinator --port not a number': { args: (f, k) => ['coordinator', '--config', k.good, '--port', 'http', '--set', `outputDir=${k.out}`], error: /^--port: expected 0\.\.65535, got "http"$/ },
  'coordinator --port out of range': { args: (f, k) => ['coordinator', '--config', k.good, '--port', '70000', '--set', `outputDir=${k.out}`], error: /^--port: expected 0\.\.65535, got "70000"$/ },
  'coordinator --port in use': { args: (f, k) => ['coordinator', '--config', k.good, '--port', String(f.busyPort), '--set', `outputDir=${k.out}`], error: /^cannot listen on 127\.0\.0\.1:\d+: the port is in use \(EADDRINUSE\)$/ },
  'coordinator with TTC_SECRET too short': { args: (f, k) => ['coordinator', '--config', k.good, '--port', '0', '--set', `outputDir=${k.out}`], env: () => ({ TTC_SECRET: 'short' }), error: /^TTC_SECRET is 5 bytes; at least 16 are required/ },
  'worker --coordinator a malformed URL': { args: () => ['worker', '--coordinator', 'ws://[::1'], error: /^--coordinator: "ws:\/\/\[::1" is not a URL/ },
  'worker --ring-port out of range': { args: () => ['worker', '--coordinator', 'ws://127.0.0.1:1', '--ring-port', '65536'], error: /^--ring-port: expected 0\.\.65535, got "65536"$/ },
  'serve --port in use': { args: (f, k) => ['serve', '--port', String(f.busyPort), '--output-dir', k.out], error: /^cannot listen on 127\.0\.0\.1:\d+: the port is in use \(EADDRINUSE\)$/ },
  'serve --output-dir an existing file': { args: (f) => ['serve', '--port', '0', '--output-dir', f.file], error: /^--output-dir .*: exists and is not a directory$/ },
  'serve with TTC_TLS_CERT a missing file': { args: (f, k) => ['serve', '--port', '0', '--output-dir', k.out], env: (f) => ({ TTC_TLS_CERT: path.join(f.dir, 'missing.pem'), TTC_TLS_KEY: f.file }), error: /^TLS: TTC_TLS_CERT=.*missing\.pem: cannot read it \(ENOENT\)$/ },
  'serve with TLS files that are not PEM': { args: (f, k) => ['serve', '--port', '0', '--output-dir', k.out], env: (f) => ({ TTC_TLS_CERT: f.garbage, TTC_TLS_KEY: f.garbage }), error: /^TLS: TTC_TLS_CERT=.*: not a usable PEM certificate, key and CA \(.*\)$/ },
  'run --config a directory': { args: (f) => ['run', '--coordinator', '127.0.0.1:1', '--config', f.emptyDir], error: /^cannot read config file .*EISDIR/ },
  'run --report-dir an existing file': { args: (f, k) => ['run', '--coordinator', '127.0.0.1:1', '--config', k.good, '--report-dir', f.file], error: /^--report-dir .*: exists and is not a directory$/ },
  'status --coordinator unreachable': { args: () => ['status', '--coordinator', 'ws://127.0.0.1:1'], error: /^coordinator at ws:\/\/127\.0\.0\.1:1 unreachable: / },
  'status --coordinator an unknown host': { args: () => ['status', '--coordinator', 'ws://no-such-host.invalid:7070'], error: /^coordinator at ws:\/\/no-such-host\.invalid:7070 unreachable: / },
  'status --interval not a number': { args: () => ['status', '--coordinator', '127.0.0.1:1', '--follow', '--interval', 'soon'], error: /^--interval: expected seconds > 0, got "soon"$/ },
  'status with TTC_TLS_CA a missing file': { args: () => ['status', '--coordinator', '127.0.0.1:1'], env: (f) => ({ TTC_TLS_CA: path.join(f.dir, 'missing-ca.pem') }), error: /^TLS: TTC_TLS_CA=.*missing-ca\.pem: cannot read it \(ENOENT\)$/ },
  'report --out an existing file': { args: (f, k) => ['report', '--coordinator', '127.0.0.1:1', '--run', 'x', '--out', f.file], error: /^--out .*: exists and is not a directory$/ },
  'cancel without --run': { args: () => ['cancel', '--coordinator', '127.0.0.1:1'], error: /^--run is required$/, usage: true },
  'data without a source': { args: () => ['data'], error: /^expected a source: ddtp or tsv$/, usage: true },
  'data with an unknown source': { args: () => ['data', 'europarl'], error: /^unknown source "europarl": ddtp or tsv$/, usage: true },
  'data ddtp --mirror that is not http, https or file': { args: (f, k) => ['data', 'ddtp', '--mirror', 'ftp://x/debian', '--out', k.out], error: /^--mirror ftp:\/\/x\/debian: expected an http:\/\/, https:\/\/ or file: URL, got ftp:$/ },
  'data ddtp --out a file': { args: (f) => ['data', 'ddtp', '--out', f.file], error: /^--out .*a-file: exists and is not a directory$/ },
  'data ddtp --offline without a cache': { args: (f) => ['data', 'ddtp', '--offline', '--out', f.emptyDir], error: /^data cache .*: no manifest\.json, and --offline forbids downloading it again$/ },
  'data tsv without --in': { args: (f, k) => ['data', 'tsv', '--out', k.out], error: /^ttc data tsv: --in and --out are required$/, usage: true },
  'data tsv a file that is not TSV': { args: (f, k) => ['data', 'tsv', '--in', f.garbage, '--out', k.out], error: /garbage\.json:1: expected "source<TAB>target", found no tab$/ },
};

let fixtures: Promise<Fixtures> | undefined;
let holder: net.Server | undefined;

const runConfig = (outputDir: string) => JSON.stringify({ outputDir, cacheDir: TEST_CACHE_DIR, backend: 'cpu', model: TINY_MODEL, budget: { kind: 'steps', steps: 2 } });

function makeFixtures(): Promise<Fixtures> {
  const dir = tempDir('cli-errors');
  const write = (name: string, text: string) => {
    const p = path.join(dir, name);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
    return p;
  };
  const config = runConfig(path.join(dir, 'runs'));
  const emptyDir = path.join(dir, 'empty-dir');
  fs.mkdirSync(emptyDir);
  holder = net.createServer();
  return new Promise((resolve, reject) => {
    holder!.once('error', reject);
    holder!.listen(0, '127.0.0.1', () =>
      resolve({
        dir,
        file: write('a-file', 'not a directory\n'),
        emptyDir,
        truncatedRun: path.dirname(write('truncated-run/config.json', config.slice(0, 40))),
        emptyConfigRun: path.dirname(write('empty-config-run/config.json', '')),
        garbage: write('garbage.json', 'not json\nat all\n'),
        empty: write('empty.json', ''),
        truncatedSweep: path.dirname(write('truncated-sweep/sweep.json', '{"sizes": [')),
        busyPort: (holder!.address() as net.AddressInfo).port,
      }),
    );
  });
}

test.after.always(() => holder?.close());

// A few at a time: each is a node process loading tsx, on a machine that may be busy.
let running = 0;
const queue: Array<() => void> = [];
async function limited<T>(fn: () => Promise<T>): Promise<T> {
  if (running >= 4) await new Promise<void>((r) => queue.push(r));
  running++;
  try {
    return await fn();
  } finally {
    running--;
    queue.shift()?.();
  }
}

function ttc(args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const clean: NodeJS.ProcessEnv = { ...process.env, TTC_SECRET: 'a-secret-of-at-least-16-bytes', ...env };
  for (const k of ['TTC_COORDINATOR', 'TTC_SECRET_FILE', 'TTC_HOST', 'TTC_PORT', 'TTC_OUTPUT_DIR', 'TTC_TLS_CA', 'TTC_TLS_CERT', 'TTC_TLS_KEY', 'TTC_TLS_INSECURE']) if (!(k in env)) delete clean[k];
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/ttc.mjs', ...args], { env: clean, timeout: scaled(120_000) }, (err, _stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number | string }).code as number | null) : 0, stderr });
    });
  });
}

for (const [name, c] of Object.entries(cases)) {
  test(name, async (t) => {
    const f = await (fixtures ??= makeFixtures());
    const caseDir = tempDir('cli-errors-case');
    const out = path.join(caseDir, 'out');
    const good = path.join(caseDir, 'good.json');
    fs.writeFileSync(good, runConfig(out));
    const args = c.args(f, { out, good });
    const r = await limited(() => ttc(args, c.env?.(f) ?? {}));
    const shown = `ttc ${args.join(' ')} →\n${r.stderr}`;
    t.not(r.code, 0, shown);
    t.true(typeof r.code === 'number', `exited with a status, not killed: ${shown}`);
    const lines = r.stderr.trimEnd().split('\n');
    const prefix = `ttc ${args[0]}: `;
    t.true(lines[0]!.startsWith(prefix), shown);
    t.regex(lines[0]!.slice(prefix.length), c.error, shown);
    if (c.usage) {
      t.is(lines[1], '', shown);
      t.true(lines[2]!.startsWith(`ttc ${args[0]} `), `the usage follows: ${shown}`);
    } else {
      t.is(lines.length, 1, `one line: ${shown}`);
    }
    t.false(lines.some((l) => /^\s+at /.test(l)), `no stack trace: ${shown}`);
    const runDirs = fs.existsSync(out) ? fs.readdirSync(out, { withFileTypes: true }).filter((d) => d.isDirectory()) : [];
    t.deepEqual(runDirs.map((d) => d.name), [], `no run directory in ${out}`);
  });
}
