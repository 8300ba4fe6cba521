// An uncaught exception thrown outside any test's promise chain kills the file's worker.
import test from 'ava';

test.serial('passes before the crash', (t) => t.pass());
test.serial('throws from a timer', async (t) => {
  setTimeout(() => { throw new Error('uncaught in a timer'); }, 10);
  await new Promise((resolve) => setTimeout(resolve, 60_000));
  t.pass();
});
test.serial('never starts', (t) => t.pass());
