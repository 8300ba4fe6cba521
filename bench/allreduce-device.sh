#!/usr/bin/env bash
# bench/allreduce.ts on a many-core host without node_modules (the device tool's GPU host: 16 cores,
# so every rank has a core of its own, which the 2-core development machine cannot give).
#
#   on this machine:   bash bench/allreduce-device.sh prepare   (needs .gpu/node.xz from
#                      ../shared/gpu/prepare.sh; bundles bench/allreduce.ts and its worker into .gpu/)
#   on the host:       bash bench/allreduce-device.sh [allreduce.ts options]   (repo root, .gpu/ copied)
#
# Writes $OUT/allreduce.txt and allreduce.json (default ./allreduce-results).
set -uo pipefail
cd "$(dirname "$0")/.."
BANNER="import {createRequire as __cr} from 'module'; const require = __cr(import.meta.url);"
# optional native helpers of ws and msgpackr: absent is fine (both fall back to JS)
EXTERNAL=(--external:bufferutil --external:utf-8-validate --external:msgpackr-extract)

if [ "${1:-}" = prepare ]; then
  set -e
  [ -s .gpu/node.xz ] || bash ../shared/gpu/prepare.sh
  mkdir -p .gpu/allreduce
  npx esbuild bench/allreduce.ts --bundle --platform=node --format=esm "${EXTERNAL[@]}" --banner:js="$BANNER" --outfile=.gpu/allreduce/allreduce.mjs
  npx esbuild tests/kit/collective-worker.ts --bundle --platform=node --format=esm "${EXTERNAL[@]}" --banner:js="$BANNER" --outfile=.gpu/allreduce/collective-worker.mjs
  du -sh .gpu/allreduce
  exit 0
fi

OUT=${OUT:-$PWD/allreduce-results}
mkdir -p "$OUT"
[ -s .gpu/allreduce/allreduce.mjs ] || { echo "missing .gpu/allreduce: run 'bash bench/allreduce-device.sh prepare' here first" >&2; exit 1; }
NODE=/tmp/ttc-node
if [ ! -x "$NODE" ]; then
  if [ -s .gpu/node.xz ]; then
    python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open('.gpu/node.xz'), open(sys.argv[1], 'wb'))" "$NODE.tmp" && chmod +x "$NODE.tmp" && mv "$NODE.tmp" "$NODE"
  else
    NODE=$(command -v node) || { echo "no node" >&2; exit 1; }
  fi
fi
{ echo "# $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"; uptime; } | tee "$OUT/allreduce.txt"
# the bundled workers run without tsx; fork() uses this node (process.execPath)
TTC_BENCH_WORKER="$PWD/.gpu/allreduce/collective-worker.mjs" "$NODE" .gpu/allreduce/allreduce.mjs --json "$OUT/allreduce.json" "$@" 2>&1 | tee -a "$OUT/allreduce.txt"
exit "${PIPESTATUS[0]}"
