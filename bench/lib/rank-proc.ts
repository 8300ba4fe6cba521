/**
 * Parent side of bench/lib/cluster-rank.ts: start one rank process inside a network namespace
 * (`ip netns exec <ns> node --import tsx cluster-rank.ts`, IPC through the inherited channel fd)
 * and send it commands, each answered once, every wait bounded.
 */
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import type { NetCluster } from './netns.ts';
import type { RankCommand, RankReply } from './cluster-rank.ts';

const RANK_SCRIPT = fileURLToPath(new URL('./cluster-rank.ts', import.meta.url));
type Ok = Extract<RankReply, { ok: true }>;

export class RankProc {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Ok) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private exitInfo: string | undefined;

  private constructor(private readonly child: ChildProcess, readonly name: string) {
    child.on('message', (r: RankReply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      clearTimeout(p.timer);
      if (r.ok) p.resolve(r);
      else p.reject(new Error(`${this.name}: ${r.error}`));
    });
    child.on('exit', (code, signal) => {
      this.exitInfo = `exited ${code ?? signal}`;
      for (const [id, p] of this.pending) { clearTimeout(p.timer); p.reject(new Error(`${this.name} ${this.exitInfo} (command ${id} unanswered)`)); }
      this.pending.clear();
    });
    child.on('error', (e) => { this.exitInfo = `failed to start: ${e.message}`; });
  }

  static start(net: NetCluster, index: number, secret: string): RankProc {
    const child = net.spawnIn(index, [process.execPath, '--import', 'tsx', RANK_SCRIPT], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, TTC_SECRET: secret, TTC_SECRET_FILE: undefined },
    });
    return new RankProc(child, `rank ${index} (${net.namespaces[index]})`);
  }

  request(cmd: RankCommand, timeoutMs: number): Promise<Ok> {
    if (this.exitInfo) return Promise.reject(new Error(`${this.name} ${this.exitInfo}`));
    const id = this.nextId++;
    return new Promise<Ok>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: no answer to "${cmd.cmd}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.child.send({ ...cmd, id });
    });
  }

  /** Ask it to close; kill it if it has not exited within `timeoutMs`. */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.exitInfo) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.request({ cmd: 'close' }, timeoutMs).catch(() => {});
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(timer);
  }

  kill(): void {
    if (!this.exitInfo) this.child.kill('SIGKILL');
  }
}
