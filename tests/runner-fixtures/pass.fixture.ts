import test from 'ava';

test('passes', (t) => t.pass());
test('passes too', (t) => t.pass());
test.skip('is skipped', (t) => t.pass());
