/**
 * Tests that need something this machine may lack (openssl, a Vulkan driver, kubectl): the
 * requirement is checked once, when the test file loads, and an unmet one registers the test as
 * skipped with the reason in its title, so it is reported as skipped, never counted as passed.
 */
import { spawnSync } from 'node:child_process';
import test, { type ExecutionContext } from 'ava';

/** Whether `cmd args` runs and exits 0 here. */
export function hasCommand(cmd: string, args: string[] = ['--version']): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore', timeout: 20_000 });
  return r.status === 0;
}

export const OPENSSL = hasCommand('openssl', ['version']);

type Impl = (t: ExecutionContext) => Promise<void> | void;

/** `test` (or `test.serial`) when `ok`, else the same title registered as skipped, with why. */
export function testIf(ok: boolean, why: string, opts: { serial?: boolean } = {}): (title: string, impl: Impl) => void {
  return (title, impl) => {
    if (ok) (opts.serial ? test.serial : test)(title, impl);
    else (opts.serial ? test.serial.skip : test.skip)(`${title} (skipped: ${why})`, impl);
  };
}
