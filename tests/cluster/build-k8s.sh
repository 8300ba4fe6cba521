#!/bin/bash
# Builds the Kubernetes 1.20 binaries the cluster test needs from Debian bookworm's source package
# `kubernetes` (the full upstream tree with vendor/), with Debian's golang-go, in GOPATH mode.
# Idempotent: binaries already in $CACHE/bin are kept; GOCACHE lives under $CACHE, so a rebuild
# after a cache wipe of bin/ only relinks. Usage: build-k8s.sh [CACHE]   (default /var/cache/ttc-cluster)
set -euo pipefail
CACHE=${1:-${TTC_CLUSTER_CACHE:-/var/cache/ttc-cluster}}
BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
mkdir -p "$CACHE/bin" "$CACHE/src" "$CACHE/gocache" "$CACHE/gopath/src/k8s.io"
missing=()
for b in "${BINS[@]}"; do [ -x "$CACHE/bin/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then echo "build-k8s: all binaries cached in $CACHE/bin"; exit 0; fi
echo "build-k8s: building ${missing[*]}"

SRC=$(ls -d "$CACHE"/src/kubernetes-*/ 2>/dev/null | head -1 || true)
if [ -z "$SRC" ]; then
  # the source package needs a deb-src line (the mirror Debian's own sources use)
  if [ -z "$(apt-cache showsrc kubernetes 2>/dev/null)" ]; then
    echo 'deb-src http://deb.debian.org/debian bookworm main' > /etc/apt/sources.list.d/ttc-cluster-src.list
    apt-get update -qq
  fi
  (cd "$CACHE/src" && apt-get source kubernetes)
  SRC=$(ls -d "$CACHE"/src/kubernetes-*/ | head -1)
fi
SRC=${SRC%/}
ln -sfn "$SRC" "$CACHE/gopath/src/k8s.io/kubernetes"
# GOPATH mode (GO111MODULE=off): the tree at $GOPATH/src/k8s.io/kubernetes, its vendor/ resolved as GOPATH vendoring
export GOPATH="$CACHE/gopath" GO111MODULE=off GOCACHE="$CACHE/gocache" CGO_ENABLED=0
unset GOFLAGS
K=k8s.io/kubernetes
cd "$GOPATH/src/$K"

# The OpenAPI definitions kube-apiserver needs are generated, not committed, in 1.20
# (otherwise: undefined: openapi.GetOpenAPIDefinitions). Same inputs as Makefile.generated_files.
OUT=pkg/generated/openapi/zz_generated.openapi.go
if [ ! -s "$OUT" ]; then
  [ -x "$CACHE/bin/openapi-gen" ] || go build -o "$CACHE/bin/openapi-gen" $K/vendor/k8s.io/kube-openapi/cmd/openapi-gen
  dirs=$(find -H . \( -not \( \( -path ./_\* -o -path ./.\* -o -path ./vendor -o -path ./debian \) -prune \) \) -type f -name '*.go' \
    | sed 's|^./staging/src|vendor|; s|^\./||' \
    | grep -v -E '^vendor/k8s.io/(code-generator|sample-apiserver)/' \
    | xargs grep -l '^// *+k8s:' | xargs grep -l '+k8s:openapi-gen=' | xargs -n1 dirname | LC_ALL=C sort -u | sed "s|^|$K/|" | paste -sd,)
  "$CACHE/bin/openapi-gen" --logtostderr -i "$dirs" -p $K/pkg/generated/openapi -O zz_generated.openapi \
    -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r /dev/null
fi
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v1.20.2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=20 -X k8s.io/client-go/pkg/version.gitVersion=v1.20.2"
ldflags="${ldflags//k8s.io\//$K/vendor/k8s.io/}"   # vendored package paths in GOPATH mode
for b in "${missing[@]}"; do
  echo "build-k8s: go build $b ($(date -u +%T))"
  go build -ldflags "$ldflags" -o "$CACHE/bin/$b.tmp" $K/cmd/$b
  mv "$CACHE/bin/$b.tmp" "$CACHE/bin/$b"
done
echo "build-k8s: done ($(date -u +%T))"
