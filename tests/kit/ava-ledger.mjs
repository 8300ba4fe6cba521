// Loaded by tests/run.mjs into each AVA worker process (--node-arguments=--import=…): appends the
// tests AVA selects and how each ended to the file named by TTC_TEST_LEDGER, one JSON line each,
// written synchronously as they happen. So a test file whose process hangs, exits or crashes, or
// whose AVA reporter dies, still tells the runner which tests it meant to run and which it never
// finished. It reads the worker's IPC messages to AVA's main process ({ ava: { type, title, … } },
// child-process workers: "workerThreads": false) and changes nothing in them.
import fs from 'node:fs';

const ledger = process.env.TTC_TEST_LEDGER;
const KEEP = new Set(['selected-test', 'test-passed', 'test-failed']);

if (ledger && typeof process.send === 'function') {
  const send = process.send.bind(process);
  process.send = (message, ...rest) => {
    const evt = message?.ava;
    if (evt && KEEP.has(evt.type)) {
      const { type, title, skip, todo } = evt;
      fs.appendFileSync(ledger, `${JSON.stringify({ type, title, skip, todo })}\n`);
    }
    return send(message, ...rest);
  };
}
