// A test file whose process exits in the middle of a test.
import test from 'ava';

test.serial('passes before the exit', (t) => t.pass());
test.serial('exits the process', () => {
  process.exit(3);
});
test.serial('never starts', (t) => t.pass());
