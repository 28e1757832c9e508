# A whole Kubernetes 1.20 cluster on one machine, inside a network namespace of its own:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and a real node (containerd +
# runc + a CNI bridge, kubelet, kube-proxy in iptables mode). Sourced by hack/k8s.sh.
#
# Network: the namespace `sconce-N` (N = 1..9, the first free "slot") holds only `lo`, the pod
# bridge and one end of a veth pair whose other end is on the host. It has no default route:
# nothing in it, pods included, can reach the machine's resolver or any outside address (a
# connect fails at once with ENETUNREACH, no packet leaves). The host reaches the plane through
# the veth: apiserver https://10.245.N.2:6443, pods 10.244.N.0/24, Services 10.96.N.0/24.
# iptables rules, the bridge and per-namespace sysctls live and die with the namespace.
#
# Mounts: containerd and the kubelet share one private mount namespace (that of the `ip netns
# exec` that starts them), so volume, overlay and netns mounts vanish with their processes.
# Pod processes live under the cgroup /sconce-N and are killed through it on stop.
# shellcheck shell=bash

plane_vars() {
  SLOT=$1
  NS=sconce-$SLOT
  HOST_IF=sconce$SLOT
  HOST_IP=10.245.$SLOT.1
  NODE_IP=10.245.$SLOT.2
  POD_CIDR=10.244.$SLOT.0/24
  SVC_CIDR=10.96.$SLOT.0/24
  KUBERNETES_IP=10.96.$SLOT.1
  CLUSTER_DNS_IP=10.96.$SLOT.10   # reserved, nothing answers: a query fails inside the plane
  if [ -n "${SCONCE_NO_NODE:-}" ]; then
    # No node: nothing routes to Services, so room for thousands (bench/operator_scale.rs
    # creates 1000; a /24 ran out of ClusterIPs at 254).
    SVC_CIDR=10.$((100 + SLOT)).0.0/20
    KUBERNETES_IP=10.$((100 + SLOT)).0.1
    CLUSTER_DNS_IP=10.$((100 + SLOT)).0.10
  fi
  CGROUP_ROOT=sconce-$SLOT
  NODE_NAME=sconce-node
}

# Global kernel settings the kubelet rewrites; restored when the last plane stops.
KUBELET_SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops"
SYSCTL_SAVE=/run/sconce-planes-sysctl.conf

# Into the plane's network namespace only. (`ip netns exec` would also remount /sys, which hides
# the cgroup hierarchies the kubelet needs.)
in_ns() { nsenter --net="/run/netns/$NS" "$@"; }

preflight() {
  local missing=()
  [ "$(id -u)" = 0 ] || missing+=("root (network namespaces, mounts and cgroups need it; run as root)")
  local c
  for c in ip iptables containerd runc ctr openssl curl unshare nsenter; do
    command -v "$c" >/dev/null || missing+=("$c")
  done
  [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ] \
    || missing+=("CNI plugins in /usr/lib/cni (apt-get install containernetworking-plugins)")
  for c in $K8S_CMDS etcd pause; do [ -x "$BIN/$c" ] || missing+=("$BIN/$c (hack/k8s.sh setup)"); done
  for c in cpu memory pids devices freezer; do
    [ -d "/sys/fs/cgroup/$c" ] || missing+=("cgroup v1 controller /sys/fs/cgroup/$c")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    printf 'hack/k8s.sh: cannot start the plane here; missing:\n' >&2
    printf '  - %s\n' "${missing[@]}" >&2
    printf 'Debian packages: apt-get install iproute2 iptables containerd runc containernetworking-plugins openssl curl\n' >&2
    exit 1
  fi
}

# Claim the first free slot by creating its namespace (atomic: `ip netns add` fails if taken).
claim_slot() {
  local n
  for n in 1 2 3 4 5 6 7 8 9; do
    if ip netns add "sconce-$n" 2>/dev/null; then echo "$n"; return 0; fi
  done
  die "all 9 plane slots are taken (ip netns list); stop one with hack/k8s.sh stop RUN_DIR"
}

network_up() {
  ip link add "$HOST_IF" type veth peer name uplink netns "$NS"
  ip addr add "$HOST_IP/24" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  in_ns ip link set lo up
  in_ns ip addr add "$NODE_IP/24" dev uplink
  in_ns ip link set uplink up
  # the host reaches pods and Services through the namespace
  ip route add "$POD_CIDR" via "$NODE_IP" dev "$HOST_IF"
  ip route add "$SVC_CIDR" via "$NODE_IP" dev "$HOST_IF"
  in_ns sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
}

pki() {
  local p=$RUN/pki
  mkdir -p "$p"
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$p/ca.key" -out "$p/ca.crt" -days 3650 -subj /CN=sconce-test-ca 2>/dev/null
  cert() { # name subject [subjectAltName]
    openssl req -newkey rsa:2048 -nodes -keyout "$p/$1.key" -out "$p/$1.csr" -subj "$2" 2>/dev/null
    if [ -n "${3:-}" ]; then printf 'subjectAltName=%s\n' "$3" > "$p/$1.ext"; else : > "$p/$1.ext"; fi
    openssl x509 -req -in "$p/$1.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
      -out "$p/$1.crt" -days 3650 -extfile "$p/$1.ext" 2>/dev/null
  }
  cert apiserver /CN=kube-apiserver "IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert node "/O=system:nodes/CN=system:node:$NODE_NAME"
  cert kubelet-serving "/CN=$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME"
  echo "$(openssl rand -hex 16),admin,admin,system:masters" > "$p/tokens.csv"
}

kubeconfig() { # file user-yaml
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- cluster: {server: "https://$NODE_IP:6443", certificate-authority: "$RUN/pki/ca.crt"}
  name: sconce-local
users:
- name: user
  user: $2
contexts:
- context: {cluster: sconce-local, user: user, namespace: default}
  name: sconce-local
current-context: sconce-local
KC
}

# daemon NAME CMD...: start CMD in the plane's namespace, log to logs/NAME.log, pid to NAME.pid
daemon() {
  local name=$1; shift
  in_ns "$@" > "$RUN/logs/$name.log" 2>&1 8>&- 9>&- &
  echo $! > "$RUN/$name.pid"
}

api_ready() {
  curl -sf --cacert "$RUN/pki/ca.crt" -H "Authorization: Bearer $(cut -d, -f1 "$RUN/pki/tokens.csv")" \
    "https://$NODE_IP:6443$1" >/dev/null 2>&1
}

wait_for() { # seconds description command...
  local secs=$1 what=$2; shift 2
  local i
  for ((i = 0; i < secs * 4; i++)); do "$@" && return 0; sleep 0.25; done
  log "timed out after ${secs}s waiting for $what; logs in $RUN/logs"
  return 1
}

control_plane_up() {
  daemon etcd "$BIN/etcd" --name sconce --data-dir "$RUN/etcd-data" --unsafe-no-fsync \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster sconce=http://127.0.0.1:2380
  daemon apiserver "$BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --secure-port=6443 --insecure-port=0 --advertise-address="$NODE_IP" \
    --tls-cert-file="$RUN/pki/apiserver.crt" --tls-private-key-file="$RUN/pki/apiserver.key" \
    --client-ca-file="$RUN/pki/ca.crt" --token-auth-file="$RUN/pki/tokens.csv" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --kubelet-client-certificate="$RUN/pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$RUN/pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$RUN/pki/ca.crt" --kubelet-preferred-address-types=InternalIP \
    --service-account-key-file="$RUN/pki/sa.pub" --service-account-signing-key-file="$RUN/pki/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc --service-cluster-ip-range="$SVC_CIDR" \
    --allow-privileged=true
  wait_for 60 "kube-apiserver" api_ready /readyz || { tail -20 "$RUN/logs/apiserver.log" >&2; exit 1; }
  log "kube-apiserver ready on https://$NODE_IP:6443"
  # no cloud: the node IPAM, routes, service load balancers and volume controllers stay off
  daemon kcm "$BIN/kube-controller-manager" --kubeconfig="$RUN/admin.kubeconfig" \
    --bind-address=127.0.0.1 --port=0 --secure-port=0 --leader-elect=false \
    --use-service-account-credentials=false --service-account-private-key-file="$RUN/pki/sa.key" \
    --root-ca-file="$RUN/pki/ca.crt" --cluster-signing-cert-file="$RUN/pki/ca.crt" \
    --cluster-signing-key-file="$RUN/pki/ca.key" \
    --controllers='*,-nodeipam,-cloud-node-lifecycle,-route,-service,-persistentvolume-binder,-attachdetach,-persistentvolume-expander' \
    --node-monitor-period=2s --node-monitor-grace-period=16s --horizontal-pod-autoscaler-sync-period=5s
  daemon scheduler "$BIN/kube-scheduler" --kubeconfig="$RUN/admin.kubeconfig" \
    --authentication-kubeconfig="$RUN/admin.kubeconfig" --authorization-kubeconfig="$RUN/admin.kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1 --port=0 --secure-port=10259
}

node_configs() {
  mkdir -p "$RUN/cni/net.d" "$RUN/cni/ipam" "$RUN/kubelet" "$RUN/containerd"
  containerd config default > "$RUN/containerd/config.toml"
  sed -i -e "s#^root = .*#root = \"$RUN/containerd/root\"#" -e "s#^state = .*#state = \"$RUN/containerd/state\"#" \
    -e "s#address = \"/run/containerd/containerd.sock\"#address = \"$RUN/containerd.sock\"#" \
    -e 's#sandbox_image = ".*"#sandbox_image = "localhost/pause:3.4.1"#' \
    -e 's#bin_dir = "/opt/cni/bin"#bin_dir = "/usr/lib/cni"#' \
    -e "s#conf_dir = \"/etc/cni/net.d\"#conf_dir = \"$RUN/cni/net.d\"#" \
    -e 's#disable_apparmor = false#disable_apparmor = true#' \
    -e 's#netns_mounts_under_state_dir = false#netns_mounts_under_state_dir = true#' \
    -e 's#restrict_oom_score_adj = false#restrict_oom_score_adj = true#' "$RUN/containerd/config.toml"
  # restrict_oom_score_adj: the sandbox has no CAP_SYS_RESOURCE, runc fails on negative scores.
  # Pods: no default gateway and no masquerade; routes only to Services and the host's veth end.
  cat > "$RUN/cni/net.d/10-sconce.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "sconce", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "isDefaultGateway": false, "ipMasq": false,
   "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "dataDir": "$RUN/cni/ipam",
            "routes": [{"dst": "$SVC_CIDR"}, {"dst": "10.245.$SLOT.0/24"}]}},
  {"type": "loopback"}]}
EOF
  # Pods get the plane's cluster DNS address, never the machine's resolver (containerd would
  # copy the host's /etc/resolv.conf into pods that have no DNS settings at all).
  : > "$RUN/kubelet/resolv.conf"
  kubeconfig "$RUN/kubelet/kubeconfig" "{client-certificate: \"$RUN/pki/node.crt\", client-key: \"$RUN/pki/node.key\"}"
  cat > "$RUN/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $RUN/pki/kubelet-serving.crt
tlsPrivateKeyFile: $RUN/pki/kubelet-serving.key
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: $RUN/pki/ca.crt}}
authorization: {mode: AlwaysAllow}   # only holders of a cert from this plane's CA get in
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
cgroupsPerQOS: true
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [$CLUSTER_DNS_IP]
resolvConf: $RUN/kubelet/resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# The disk is shared with everything else on the machine: percentages of it say nothing about
# this node, so only evict when it is really (almost) full.
evictionHard: {memory.available: 100Mi, nodefs.available: 1Gi, imagefs.available: 1Gi, nodefs.inodesFree: 1%}
volumePluginDir: $RUN/kubelet/volume-plugins
EOF
}

# Runs inside the namespace, in a new mount namespace: containerd, kubelet and kube-proxy share
# it. /var/log/pods and /var/log/containers (fixed paths in kubelet 1.20) are
# bind mounts of directories under RUN in that namespace only.
node_launcher() {
  cat > "$RUN/node-launch.sh" <<EOF
set -eu
for d in log/pods log/containers lib/kubelet; do
  mkdir -p "$RUN/host-var/\$d"; mount --bind "$RUN/host-var/\$d" "/var/\$d"
done
mkdir -p "$RUN/kubelet/root"; mount --bind "$RUN/kubelet/root" "$RUN/kubelet/root"; mount --make-rshared "$RUN/kubelet/root"
containerd --config "$RUN/containerd/config.toml" > "$RUN/logs/containerd.log" 2>&1 &
echo \$! > "$RUN/containerd.pid"
for _ in \$(seq 1 80); do ctr --address "$RUN/containerd.sock" version >/dev/null 2>&1 && break; sleep 0.25; done
for image in "$IMAGES"/*.tar; do
  [ -f "\$image" ] && ctr --address "$RUN/containerd.sock" -n k8s.io images import "\$image" >/dev/null
done
"$BIN/kubelet" --config="$RUN/kubelet/config.yaml" --kubeconfig="$RUN/kubelet/kubeconfig" \
  --hostname-override=$NODE_NAME --node-ip=$NODE_IP --root-dir="$RUN/kubelet/root" \
  --cert-dir="$RUN/kubelet/pki" --seccomp-profile-root="$RUN/kubelet/seccomp" \
  --container-runtime=remote --container-runtime-endpoint="unix://$RUN/containerd.sock" \
  > "$RUN/logs/kubelet.log" 2>&1 &
echo \$! > "$RUN/kubelet.pid"
"$BIN/kube-proxy" --kubeconfig="$RUN/admin.kubeconfig" --hostname-override=$NODE_NAME \
  --cluster-cidr=$POD_CIDR --proxy-mode=iptables --bind-address=$NODE_IP \
  --healthz-bind-address=127.0.0.1:10256 --metrics-bind-address=127.0.0.1:10249 \
  --conntrack-max-per-core=0 > "$RUN/logs/kube-proxy.log" 2>&1 &
echo \$! > "$RUN/kube-proxy.pid"
EOF
}

node_up() {
  local dir created=()
  for dir in /var/log/pods /var/log/containers /var/lib/kubelet; do
    [ -d "$dir" ] || { mkdir -p "$dir"; created+=("$dir"); }
  done
  printf '%s\n' "${created[@]}" > "$RUN/created-dirs"
  local c
  for c in /sys/fs/cgroup/*/; do
    case "$c" in */unified/) continue ;; esac
    mkdir -p "$c$CGROUP_ROOT"
  done
  node_configs
  node_launcher
  in_ns unshare --mount --propagation slave bash "$RUN/node-launch.sh"
}

node_ready() {
  kubectl --kubeconfig "$RUN/admin.kubeconfig" get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True
}

default_sa_ready() {
  kubectl --kubeconfig "$RUN/admin.kubeconfig" get secret -n default -o name 2>/dev/null \
    | grep -q default-token
}

plane_start() {
  RUN=$1
  preflight
  mkdir -p "$RUN/logs"; RUN=$(cd "$RUN" && pwd)
  IMAGES=${SCONCE_IMAGES:-$SCONCE_CACHE/images}
  local slot; slot=$(claim_slot)
  plane_vars "$slot"; echo "$slot" > "$RUN/slot"
  log "plane $NS: apiserver https://$NODE_IP:6443, pods $POD_CIDR, Services $SVC_CIDR"
  if ! ls /run/netns/sconce-* 2>/dev/null | grep -qv "/$NS\$"; then
    sysctl -e $KUBELET_SYSCTLS > "$SYSCTL_SAVE"
  fi
  network_up
  pki
  kubeconfig "$RUN/admin.kubeconfig" "{token: \"$(cut -d, -f1 "$RUN/pki/tokens.csv")\"}"
  cp "$RUN/admin.kubeconfig" "$RUN/kubeconfig"
  control_plane_up
  if [ -z "${SCONCE_NO_NODE:-}" ]; then
    node_up
    wait_for 90 "node $NODE_NAME Ready" node_ready || { tail -20 "$RUN/logs/kubelet.log" >&2; exit 1; }
    log "node $NODE_NAME Ready (containerd, kubelet, kube-proxy)"
  fi
  wait_for 60 "the default ServiceAccount token" default_sa_ready || exit 1
  echo "$RUN/kubeconfig"
}

stop_pidfile() { # name
  local f=$RUN/$1.pid p
  [ -f "$f" ] || return 0
  p=$(cat "$f")
  kill "$p" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$p" 2>/dev/null || true
  rm -f "$f"
}

plane_stop() {
  RUN=$1
  [ -f "$RUN/slot" ] || return 0
  plane_vars "$(cat "$RUN/slot")"
  local name pid cg
  # the kubelet first, so nothing restarts the containers killed next
  for name in kube-proxy kubelet; do stop_pidfile "$name"; done
  for cg in /sys/fs/cgroup/*/"$CGROUP_ROOT"; do
    [ -d "$cg" ] || continue
    for pid in $(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  for name in containerd scheduler kcm apiserver etcd; do stop_pidfile "$name"; done
  # anything else still in the namespace: containerd shims
  if [ -e "/run/netns/$NS" ]; then
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 40); do [ -z "$(ip netns pids "$NS" 2>/dev/null)" ] && break; sleep 0.25; done
    ip netns del "$NS"   # also takes the veth, its routes, the bridge and every iptables rule
  fi
  for cg in /sys/fs/cgroup/*/"$CGROUP_ROOT"; do
    [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  if [ -f "$RUN/created-dirs" ]; then
    while read -r dir; do [ -n "$dir" ] && rmdir "$dir" 2>/dev/null; done < "$RUN/created-dirs"
  fi
  if ! ls /run/netns/sconce-* >/dev/null 2>&1 && [ -f "$SYSCTL_SAVE" ]; then
    sysctl -q -p "$SYSCTL_SAVE" && rm -f "$SYSCTL_SAVE"
  fi
  rm -f "$RUN/slot"
  return 0
}

plane_running() {
  RUN=$1
  [ -f "$RUN/slot" ] && [ -f "$RUN/kubeconfig" ] || return 1
  plane_vars "$(cat "$RUN/slot")"
  [ -f "$RUN/apiserver.pid" ] && kill -0 "$(cat "$RUN/apiserver.pid")" 2>/dev/null || return 1
  api_ready /readyz
}
