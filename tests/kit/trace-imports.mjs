// Records every module URL this process resolves (ESM resolution, which is how the project and its
// packages load) into the file named by TTC_TRACE_IMPORTS: `node --import ./tests/kit/trace-imports.mjs …`.
// tests/cli.test.ts uses it to check which commands load TensorFlow.js.
import { register } from 'node:module';

if (process.env.TTC_TRACE_IMPORTS) register('./trace-imports-hooks.mjs', import.meta.url, { data: { file: process.env.TTC_TRACE_IMPORTS } });
