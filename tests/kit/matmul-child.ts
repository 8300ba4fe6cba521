/**
 * Child process of tests/webgpu-matmul.test.ts: runs tests/kit/matmul-check.ts and prints one JSON
 * line ({"ok": true, ...result} or {"error": "..."}). Dawn is process-global, hence a process of its own.
 */
import { runMatmulCheck } from './matmul-check.ts';

let code = 0;
try {
  process.stdout.write(`${JSON.stringify({ ok: true, ...(await runMatmulCheck()) })}\n`);
} catch (e) {
  process.stdout.write(`${JSON.stringify({ error: e instanceof Error ? e.message.split('\n')[0] : String(e) })}\n`);
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  code = 1;
}
// exit explicitly: a Dawn instance keeps the event loop alive
process.exit(code);
