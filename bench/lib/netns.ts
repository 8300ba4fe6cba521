/**
 * A cluster of hosts on one machine: one network namespace per rank, each with an `eth0` joined by
 * a veth pair to a bridge that lives in a namespace of its own (the "switch"), so nothing is added
 * to the machine's own network namespace and every address (10.213.0.x/24) exists only inside
 * namespaces this run created. `shape()` puts a `tbf` rate limit on both ends of every veth (the
 * rank-side end shapes what the rank sends, the switch-side end what it receives), so each rank
 * has a full-duplex NIC of rate B, and a `netem` delay under it where the kernel has sch_netem.
 * `destroy()` deletes the namespaces (and with them the veths, bridge and qdiscs); it also runs on
 * exit, on SIGINT/SIGTERM and on an uncaught error.
 */
import { execFileSync, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';

const CMD_TIMEOUT_MS = 10_000;

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', timeout: CMD_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] });
}
function tc(ns: string, args: string[]): void {
  execFileSync('tc', ['-n', ns, ...args], { timeout: CMD_TIMEOUT_MS, stdio: ['ignore', 'ignore', 'pipe'] });
}
const errText = (e: unknown) => ((e as { stderr?: Buffer | string }).stderr?.toString().trim() || (e as Error).message).split('\n')[0];

/** Why this machine cannot build the cluster (not root, no `ip netns`, no tc/tbf), or undefined if it can. */
export function unavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, veth pairs and tc qdiscs)';
  const probe = `ttcprobe-${randomBytes(3).toString('hex')}`;
  try {
    ip(['netns', 'add', probe]);
  } catch (e) {
    return `ip netns add failed: ${errText(e)}`;
  }
  try {
    ip(['-n', probe, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1']);
    tc(probe, ['qdisc', 'add', 'dev', 'p0', 'root', 'tbf', 'rate', '1gbit', 'burst', '256kb', 'latency', '20ms']);
    return undefined;
  } catch (e) {
    return `veth or tc tbf unavailable: ${errText(e)}`;
  } finally {
    try { ip(['netns', 'del', probe]); } catch { /* best effort */ }
  }
}

/** Whether sch_netem (delay) works in this kernel: tried on a throw-away namespace. */
export function netemAvailable(): boolean {
  const probe = `ttcprobe-${randomBytes(3).toString('hex')}`;
  try {
    ip(['netns', 'add', probe]);
    ip(['-n', probe, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1']);
    tc(probe, ['qdisc', 'add', 'dev', 'p0', 'root', 'netem', 'delay', '1ms']);
    return true;
  } catch {
    return false;
  } finally {
    try { ip(['netns', 'del', probe]); } catch { /* best effort */ }
  }
}

export interface LinkShape {
  /** bits per second, each direction of each rank's NIC */
  rateBps: number;
  /** one-way delay between two ranks in ms (half on each veth end); 0 = none. Needs sch_netem. */
  delayMs: number;
  /** tbf queue, as the time it takes to drain at the rate (a NIC's or switch port's buffer); default 5 ms */
  queueMs?: number;
}

export class NetCluster {
  readonly namespaces: string[];
  readonly addresses: string[];
  private readonly switchNs: string;
  private destroyed = false;
  /** processes started in the namespaces, killed before the namespaces go */
  private readonly children = new Set<ChildProcess>();
  private readonly onSignal = (sig: NodeJS.Signals) => { this.destroy(); process.exit(sig === 'SIGINT' ? 130 : 143); };
  private readonly onExit = () => this.destroy();

  private constructor(readonly size: number, readonly tag: string) {
    this.switchNs = `ttc-${tag}-sw`;
    this.namespaces = Array.from({ length: size }, (_, i) => `ttc-${tag}-r${i}`);
    this.addresses = Array.from({ length: size }, (_, i) => `10.213.0.${i + 1}`);
  }

  /** Build `size` rank namespaces around one bridge; a per-run tag keeps names unique. */
  static create(size: number): NetCluster {
    if (size < 1 || size > 250) throw new RangeError(`cluster size must be 1–250, got ${size}`);
    const c = new NetCluster(size, randomBytes(3).toString('hex'));
    // cleanup first, so a failure half-way through still removes what was made
    process.once('exit', c.onExit);
    process.once('SIGINT', c.onSignal);
    process.once('SIGTERM', c.onSignal);
    try {
      c.build();
    } catch (e) {
      c.destroy();
      throw new Error(`building the network namespaces failed: ${errText(e)}`);
    }
    return c;
  }

  private build(): void {
    const sw = this.switchNs;
    ip(['netns', 'add', sw]);
    ip(['-n', sw, 'link', 'add', 'br0', 'type', 'bridge']);
    ip(['-n', sw, 'link', 'set', 'br0', 'up']);
    this.namespaces.forEach((ns, i) => {
      ip(['netns', 'add', ns]);
      // created directly inside the two namespaces: no interface ever appears in the host's namespace
      ip(['link', 'add', `v${i}`, 'netns', sw, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      ip(['-n', sw, 'link', 'set', `v${i}`, 'master', 'br0', 'up']);
      ip(['-n', ns, 'addr', 'add', `${this.addresses[i]}/24`, 'dev', 'eth0']);
      ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    });
  }

  /** (Re)shape every link: tbf at `rateBps` on both veth ends, with netem under it when delayMs > 0. */
  shape(s: LinkShape): void {
    const rate = `${Math.round(s.rateBps)}bit`;
    // the bucket must hold a 64 KB GSO packet and the tokens of ~0.2 ms (timer slack); bigger lets
    // short transfers run faster than the rate
    const burst = `${Math.max(256 * 1024, Math.round(s.rateBps / 8 * 2e-4))}b`;
    const each = (ns: string, dev: string) => {
      tc(ns, ['qdisc', 'replace', 'dev', dev, 'root', 'handle', '1:', 'tbf', 'rate', rate, 'burst', burst, 'latency', `${s.queueMs ?? 5}ms`]);
      if (s.delayMs > 0) tc(ns, ['qdisc', 'replace', 'dev', dev, 'parent', '1:1', 'handle', '10:', 'netem', 'delay', `${s.delayMs / 2}ms`, 'limit', '100000']);
    };
    this.namespaces.forEach((ns, i) => { each(ns, 'eth0'); each(this.switchNs, `v${i}`); });
  }

  /** Spawn `argv` inside rank i's namespace (`ip netns exec` execs it, so the pid is the program's and an IPC fd passes through). */
  spawnIn(i: number, argv: string[], opts: { stdio: StdioOptions; env?: NodeJS.ProcessEnv }): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.namespaces[i]!, ...argv], { stdio: opts.stdio, env: opts.env ?? process.env, serialization: 'advanced' });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    process.removeListener('exit', this.onExit);
    process.removeListener('SIGINT', this.onSignal);
    process.removeListener('SIGTERM', this.onSignal);
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const ns of [...this.namespaces, this.switchNs]) {
      try { ip(['netns', 'del', ns]); } catch { /* not made yet, or already gone */ }
    }
  }
}

/** Namespaces an earlier, killed run left behind (`ttc-<tag>-…`), for a warning. */
export function staleNamespaces(): string[] {
  try {
    return ip(['netns', 'list']).split('\n').map((l) => l.split(' ')[0]!).filter((n) => /^ttc-[0-9a-f]{6}-(sw|r\d+)$/.test(n));
  } catch {
    return [];
  }
}
