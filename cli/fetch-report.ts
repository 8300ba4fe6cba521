/** Fetching a run's result files from a run server into a folder (`ttc report`, `ttc run --report-dir`). */
import fs from 'node:fs';
import path from 'node:path';
import { TtcError } from '../core/errors.ts';
import { M } from '../protocol/index.ts';
import type { Message } from '../wire/protocol/index.ts';
import type { CliReply, CliSession } from './client.ts';

export async function fetchReport(session: CliSession, runId: string, outDir: string): Promise<string[]> {
  const root = path.resolve(outDir);
  fs.mkdirSync(root, { recursive: true });
  const open = new Map<string, { buf: Buffer; got: number }>();
  const written: string[] = [];
  const onPart = (m: CliReply) => {
    if (m.t !== 'coord.file') return;
    const target = path.resolve(root, m.name);
    // The schema already forbids ".." and absolute names; check again where the bytes would land.
    if (!target.startsWith(root + path.sep)) throw new TtcError('TTC_ERR_PROTOCOL', `the coordinator sent a file outside the report folder: ${m.name}`);
    let f = open.get(m.name);
    if (!f) open.set(m.name, (f = { buf: Buffer.alloc(m.total), got: 0 }));
    if (m.total !== f.buf.length || m.offset + m.data.length > m.total) throw new TtcError('TTC_ERR_PROTOCOL', `inconsistent parts of ${m.name}`);
    f.buf.set(m.data, m.offset);
    f.got += m.data.length;
    if (f.got === m.total) {
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.writeFileSync(target, f.buf);
      written.push(m.name);
      open.delete(m.name);
    }
  };
  const done = await session.request(() => session.connection.send(M.ReportRequest, { runId }), (m): m is Message<typeof M.FilesDone> => m.t === 'coord.files-done', 60_000, onPart);
  if (written.length !== done.count || open.size > 0) throw new TtcError('TTC_ERR_CONNECTION_LOST', `received ${written.length} of ${done.count} files (incomplete: ${[...open.keys()].join(', ') || 'none'})`);
  console.log(`${written.length} file(s) of run ${runId} (${done.state}) in ${outDir}${written.includes('report.html') ? `; open ${path.join(outDir, 'report.html')}` : ''}`);
  return written;
}
