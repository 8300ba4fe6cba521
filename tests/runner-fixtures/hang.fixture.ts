// A test that never settles (a timer keeps the worker alive): only the global timeout ends it.
import test from 'ava';

test.serial('passes before the hang', (t) => t.pass());
test.serial('hangs', async (t) => {
  await new Promise((resolve) => setTimeout(resolve, 2 ** 31 - 1));
  t.pass();
});
test.serial('never starts', (t) => t.pass());
