// AVA config for the runner's own fixtures (tests/runner.test.ts): tiny files that pass,
// hang, exit and crash, outside the main suite's glob (they are *.fixture.ts, not *.test.ts).
export default {
  extensions: { ts: 'module' },
  nodeArguments: ['--import=tsx'],
  workerThreads: false,
  files: ['tests/runner-fixtures/*.fixture.ts'],
};
