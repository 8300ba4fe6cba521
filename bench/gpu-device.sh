#!/usr/bin/env bash
# bench/gpu.ts on an offline GPU host (docs/gpu.md, ../shared/gpu/README.md): the webgpu-vs-cpu
# one-step agreement check (tiny model, then the wide one), then the benchmark, then the fused
# kernels, mixed precision and the fused attention vs the tfjs compositions; results under $OUT.
# About 5 minutes on an H200, at most 10 (each part has a time limit; a cut-short bench keeps the
# sizes it finished in bench.json).
#
#   on this machine, once:  bash bench/gpu-device.sh prepare
#                           (= bash ../shared/gpu/prepare.sh, then the esbuild bundles .gpu/run.mjs, kernels.mjs, attention.mjs)
#   on the GPU host:        bash bench/gpu-device.sh        (repo root, with .gpu/ and .gl/ copied there)
#
# Writes to $OUT (default ./gpu-results): check.txt/.json, check-wide.txt/.json, bench.txt/.json,
# kernels.txt/.json (bench/gpu-kernels.ts), mixed.txt/.json (bench/lib/mixed-bench.ts), attention.txt/.json
# (bench/gpu-attention.ts) — their exit statuses are logged, not counted — nvidia-smi.txt, device.log
# (with what the Vulkan loader can see).
# TTC_GPU_ARGS adds flags to every run (e.g. "--allow-software --quick" to try this script on lavapipe).
# Exit status: 0 when the check agreed and the bench ran on a GPU; 1 otherwise (the files say why).
# "no GPU adapter: …" (from ml/backend.ts) in the outputs means Dawn saw no usable GPU: check
# VK_DRIVER_FILES (the NVIDIA driver's ICD file), which you may set yourself before running this.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = prepare ]; then
  set -e
  bash ../shared/gpu/prepare.sh
  # navigator.gpu is set by bench/lib/gpu-setup.ts, bench/gpu.ts's first import, before the webgpu backend's
  npx esbuild bench/gpu.ts --bundle --platform=node --format=esm --external:webgpu \
    --banner:js="import {createRequire as __cr} from 'module'; const require = __cr(import.meta.url);" \
    --outfile=.gpu/run.mjs
  # the fused kernels vs the tfjs compositions (bench/gpu-kernels.ts), the same way
  npx esbuild bench/gpu-kernels.ts --bundle --platform=node --format=esm --external:webgpu \
    --banner:js="import {createRequire as __cr} from 'module'; const require = __cr(import.meta.url);" \
    --outfile=.gpu/kernels.mjs
  # the fused attention vs its tfjs composite (bench/gpu-attention.ts), bundled the same way
  npx esbuild bench/gpu-attention.ts --bundle --platform=node --format=esm --external:webgpu \
    --banner:js="import {createRequire as __cr} from 'module'; const require = __cr(import.meta.url);" \
    --outfile=.gpu/attention.mjs
  du -sh .gpu .gl
  exit 0
fi

OUT=${OUT:-$PWD/gpu-results}
mkdir -p "$OUT"
log() { echo "[gpu-device] $*" | tee -a "$OUT/device.log" >&2; }

[ -s .gpu/run.mjs ] || { log "missing .gpu/run.mjs: run 'bash bench/gpu-device.sh prepare' on the build machine and copy .gpu/ here"; exit 1; }
[ -f .gpu/node_modules/webgpu/dist/linux-x64/dawn.node ] || { log "missing .gpu/node_modules/webgpu (../shared/gpu/prepare.sh makes it)"; exit 1; }

# The Vulkan loader: the host has the NVIDIA driver and its ICD, not the loader.
if ! ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1 ' >/dev/null; then
  if ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" / || log "dpkg -x $f failed"; done
    ldconfig || true
  else
    log "no libvulkan.so.1 and no .gl/*.deb: Dawn will find no Vulkan"
  fi
fi

# The driver's own ICD file (the loader may not know where the driver was mounted).
if [ -z "${VK_DRIVER_FILES:-}" ]; then
  for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
    /etc/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.x86_64.json /usr/local/share/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$f" ]; then export VK_DRIVER_FILES="$f" VK_ICD_FILENAMES="$f"; break; fi
  done
fi
log "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset, the loader searches its default places}"

# node: the one prepare.sh packed (the host has none), else one on the PATH
NODE=/tmp/ttc-node
if [ -s .gpu/node.xz ]; then
  if [ ! -x "$NODE" ]; then
    if command -v python3 >/dev/null; then
      python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open('.gpu/node.xz'), open(sys.argv[1], 'wb'))" "$NODE.tmp"
    else
      xz -dc .gpu/node.xz > "$NODE.tmp"
    fi
    chmod +x "$NODE.tmp" && mv "$NODE.tmp" "$NODE"
  fi
elif command -v node >/dev/null; then
  NODE=$(command -v node)
else
  log "no .gpu/node.xz and no node on the PATH"; exit 1
fi
log "node $("$NODE" --version)"

{ nvidia-smi --query-gpu=name,driver_version,memory.total,utilization.gpu --format=csv; nvidia-smi; } > "$OUT/nvidia-smi.txt" 2>&1 || true

# what the Vulkan loader can see (for the log: a missing adapter is diagnosed from this)
{
  echo "## ICD files"; ls -la /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>&1
  echo "## libvulkan / libGLX_nvidia"; ldconfig -p 2>/dev/null | grep -E 'libvulkan|libGLX_nvidia|libnvidia-glvkspirv' || echo none
  echo "## /dev/nvidia*"; ls /dev/nvidia* 2>&1
} >> "$OUT/device.log" 2>&1

cd .gpu
# 1. agreement: one MLM training step on webgpu and on cpu, same weights and batch (~20 s)
timeout 90 "$NODE" run.mjs --check ${TTC_GPU_ARGS:-} --json "$OUT/check.json" 2>&1 | grep -v 'artificially reduced' | tee "$OUT/check.txt"
check_rc=${PIPESTATUS[0]}
log "check exit $check_rc"
if grep -q '^no GPU adapter' "$OUT/check.txt"; then
  # another ICD file the driver may have installed (the loader's default places, then anywhere)
  alt=$(find / -xdev \( -name 'nvidia_icd*.json' -o -name 'nvidia_layers.json' \) 2>/dev/null | grep icd | grep -vx "${VK_DRIVER_FILES:-none}" | head -1)
  if [ -n "$alt" ]; then
    log "no adapter with VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}; retrying with $alt"
    export VK_DRIVER_FILES="$alt" VK_ICD_FILENAMES="$alt"
    timeout 90 "$NODE" run.mjs --check ${TTC_GPU_ARGS:-} --json "$OUT/check.json" 2>&1 | grep -v 'artificially reduced' | tee "$OUT/check.txt"
    check_rc=${PIPESTATUS[0]}
    log "check (retry) exit $check_rc"
  fi
fi
# 1b. the same at realistic widths (L2 d256, T128, batch 8): the GPU's tiled kernels (~30 s)
if ! grep -q '^no GPU adapter' "$OUT/check.txt"; then
  timeout 90 "$NODE" run.mjs --check --check-model wide ${TTC_GPU_ARGS:-} --json "$OUT/check-wide.json" 2>&1 | grep -v 'artificially reduced' | tee "$OUT/check-wide.txt"
  wide_rc=${PIPESTATUS[0]}
  log "check-wide exit $wide_rc"
  [ "$wide_rc" = 0 ] || check_rc=$wide_rc
fi
# 2. the benchmark: matMul 4096², then small / medium / base (B32×128), then base in mixed precision, ~3 min on an H200
timeout 230 "$NODE" run.mjs ${TTC_GPU_ARGS:-} --json "$OUT/bench.json" 2>&1 | grep -v 'artificially reduced' | tee "$OUT/bench.txt"
bench_rc=${PIPESTATUS[0]}
log "bench exit $bench_rc"
# 3. the fused kernels vs the tfjs compositions, per op and per training step (~30 s; informational:
#    its exit status is logged, not part of this script's)
if [ -s kernels.mjs ]; then
  timeout 90 "$NODE" kernels.mjs ${TTC_GPU_ARGS:-} --json "$OUT/kernels.json" 2>&1 | grep -v 'artificially reduced' | tee "$OUT/kernels.txt"
  log "kernels bench exit ${PIPESTATUS[0]}"
fi
# 4. mixed precision: the tiled/f16 matmul vs tfjs's on BERT-base's products, fp32 vs mixed training (~1 min)
if ! grep -q '^no GPU adapter' "$OUT/check.txt"; then
  timeout 60 "$NODE" run.mjs --mixed ${TTC_GPU_ARGS:-} --json "$OUT/mixed.json" 2>&1 | grep -v 'artificially reduced' | tee "$OUT/mixed.txt"
  log "mixed exit ${PIPESTATUS[0]}"
fi
# 5. fused attention vs the tfjs composite, forward and forward+backward (~30 s on an H200)
if [ -s attention.mjs ] && ! grep -q '^no GPU adapter' "$OUT/check.txt"; then
  timeout 60 "$NODE" attention.mjs --json "$OUT/attention.json" 2>&1 | grep -v 'artificially reduced' | tee "$OUT/attention.txt"
  log "attention bench exit ${PIPESTATUS[0]}"
fi
if grep -q '^no GPU adapter' "$OUT/check.txt" "$OUT/bench.txt"; then
  log "Dawn found no usable GPU adapter (see above): nothing was measured on a GPU"
  exit 1
fi
[ "$check_rc" = 0 ] && [ "$bench_rc" = 0 ]
