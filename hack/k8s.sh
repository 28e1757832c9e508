#!/usr/bin/env bash
# A real Kubernetes control plane (etcd 3.4 + kube-apiserver/kube-controller-manager 1.20.2) on loopback,
# built once from Debian bookworm's packages into a cache outside the clone.
#
#   hack/k8s.sh setup            build/fetch binaries into $SCONCE_K8S_HOME (idempotent)
#   hack/k8s.sh kubectl          put a kubectl (Debian trixie kubectl) into the cache's bin/
#   hack/k8s.sh start RUN_DIR    start etcd + apiserver + controller-manager; writes RUN_DIR/kubeconfig
#   hack/k8s.sh ensure RUN_DIR   start unless a healthy cluster already runs there; print the kubeconfig
#   hack/k8s.sh stop RUN_DIR     stop them again
#
# env: SCONCE_K8S_HOME (~/.cache/sconce/k8s-1.20.2), API_PORT (free port), ETCD_PORT (free port),
#      DEBIAN_MIRROR, NO_KCM=1 (no controller-manager)
set -euo pipefail

K8S_HOME=${SCONCE_K8S_HOME:-$HOME/.cache/sconce/k8s-1.20.2}
BIN=$K8S_HOME/bin
SRC_VERSION=1.20.5+really1.20.2-1.1+deb12u1
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { echo "+++ [k8s $(date +%H:%M:%S)] $*" >&2; }

have_binaries() { [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] && [ -x "$BIN/etcd" ]; }

setup() {
  if have_binaries; then log "binaries present in $BIN"; return 0; fi
  # one builder at a time (tests and the demo may both call setup)
  mkdir -p "$K8S_HOME"
  exec 9>"$K8S_HOME/.setup.lock"; flock 9
  if have_binaries; then log "binaries present in $BIN"; return 0; fi
  local work=$K8S_HOME/build
  rm -rf "$work"; mkdir -p "$work"/{apt/lists/partial,apt/archives/partial,apt/etc,debs,prefix,src} "$BIN"
  # private apt config: nothing system-wide changes
  cat > "$work/apt/etc/sources.list" <<SL
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm main
SL
  local o=(-o "Dir::State::Lists=$work/apt/lists" -o "Dir::Etc::SourceList=$work/apt/etc/sources.list"
     -o "Dir::Etc::SourceParts=/dev/null" -o "Dir::Cache::Archives=$work/apt/archives"
     -o "Dir::State::status=/dev/null" -o "APT::Sandbox::User=root")
  log "1/5 apt-get update (private lists)"
  apt-get "${o[@]}" -qq update
  log "2/5 download Go 1.19, etcd and helpers as .debs"
  (cd "$work/debs" && apt-get "${o[@]}" -qq download golang-1.19-go golang-1.19-src etcd-server etcd-client \
     rsync libpopt0 golang-github-modern-go-reflect2-dev)
  for d in "$work"/debs/*.deb; do dpkg -x "$d" "$work/prefix"; done
  log "3/5 download kubernetes source $SRC_VERSION"
  (cd "$work/src" && apt-get "${o[@]}" -qq source --download-only "kubernetes=$SRC_VERSION" \
     && tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz)
  local k=$work/src/kubernetes-1.20.2
  # vendored reflect2 v1.0.1 breaks with Go >= 1.18; Debian's 1.0.2 has the same API
  local v=$k/vendor/github.com/modern-go/reflect2
  find "$v" \( -name '*.go' -o -name '*.s' \) -delete
  cp "$work"/prefix/usr/share/gocode/src/github.com/modern-go/reflect2/*.{go,s} "$v/"
  log "4/5 make kube-apiserver kube-controller-manager (several minutes on 2 cores)"
  (
    export GOROOT=$work/prefix/usr/lib/go-1.19
    export PATH=$GOROOT/bin:$work/prefix/usr/bin:$PATH
    export LD_LIBRARY_PATH=$work/prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export GOPROXY=off GOFLAGS=-mod=vendor GOTOOLCHAIN=local CGO_ENABLED=0 HOME=$work/home
    mkdir -p "$HOME"; cd "$k"
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$work/make.log" 2>&1 \
      || { tail -40 "$work/make.log"; exit 1; }
  )
  log "5/5 install binaries"
  cp "$k/_output/bin/kube-apiserver" "$k/_output/bin/kube-controller-manager" "$BIN/"
  cp "$work/prefix/usr/bin/etcd" "$work/prefix/usr/bin/etcdctl" "$BIN/"
  rm -rf "$work"
  "$BIN/kube-apiserver" --version
}

# Machines without kubectl get Debian trixie's client (1.32; Debian has no newer apiserver).
fetch_kubectl() {
  [ -x "$BIN/kubectl" ] && { log "kubectl present in $BIN"; return 0; }
  local work=$K8S_HOME/kubectl-build
  rm -rf "$work"; mkdir -p "$work"/{apt/lists/partial,apt/archives/partial,apt/etc,debs,prefix} "$BIN"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR trixie main" > "$work/apt/etc/sources.list"
  local o=(-o "Dir::State::Lists=$work/apt/lists" -o "Dir::Etc::SourceList=$work/apt/etc/sources.list"
     -o "Dir::Etc::SourceParts=/dev/null" -o "Dir::Cache::Archives=$work/apt/archives"
     -o "Dir::State::status=/dev/null" -o "APT::Sandbox::User=root")
  log "downloading kubectl (Debian trixie kubectl)"
  apt-get "${o[@]}" -qq update
  (cd "$work/debs" && apt-get "${o[@]}" -qq download kubectl)
  dpkg -x "$work"/debs/kubectl_*.deb "$work/prefix"
  cp "$work/prefix/usr/bin/kubectl" "$BIN/kubectl"
  rm -rf "$work"
  "$BIN/kubectl" version --client
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() {
  local run=${1:?usage: k8s.sh start RUN_DIR}
  have_binaries || setup
  mkdir -p "$run"/{pki,etcd-data,logs}; run=$(cd "$run" && pwd); cd "$run"
  local api_port=${API_PORT:-$(free_port)} etcd_port=${ETCD_PORT:-$(free_port)} peer_port
  peer_port=$(free_port)
  if [ ! -f pki/ca.key ]; then
    openssl genrsa -out pki/sa.key 2048 2>/dev/null
    openssl rsa -in pki/sa.key -pubout -out pki/sa.pub 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -keyout pki/ca.key -out pki/ca.crt -days 3650 -subj /CN=sconce-test-ca 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout pki/apiserver.key -out pki/apiserver.csr -subj /CN=kube-apiserver 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1\n' > pki/ext
    openssl x509 -req -in pki/apiserver.csr -CA pki/ca.crt -CAkey pki/ca.key -CAcreateserial -out pki/apiserver.crt -days 3650 -extfile pki/ext 2>/dev/null
    echo "$(openssl rand -hex 16),admin,admin,system:masters" > pki/tokens.csv
  fi
  local token; token=$(cut -d, -f1 pki/tokens.csv)
  "$BIN"/etcd --name sconce --data-dir "$run/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "sconce=http://127.0.0.1:$peer_port" --unsafe-no-fsync > logs/etcd.log 2>&1 8>&- 9>&- &
  echo $! > etcd.pid
  "$BIN"/kube-apiserver --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" --insecure-port=0 \
    --tls-cert-file=pki/apiserver.crt --tls-private-key-file=pki/apiserver.key --client-ca-file=pki/ca.crt \
    --token-auth-file=pki/tokens.csv --authorization-mode=RBAC \
    --service-account-key-file=pki/sa.pub --service-account-signing-key-file=pki/sa.key \
    --service-account-issuer=https://kubernetes.default.svc --service-cluster-ip-range=10.0.0.0/24 \
    --allow-privileged=true > logs/kube-apiserver.log 2>&1 8>&- 9>&- &
  echo $! > apiserver.pid
  cat > kubeconfig <<KC
apiVersion: v1
kind: Config
clusters:
- cluster: {server: "https://127.0.0.1:$api_port", certificate-authority: "$run/pki/ca.crt"}
  name: sconce-local
users:
- name: admin
  user: {token: "$token"}
contexts:
- context: {cluster: sconce-local, user: admin, namespace: default}
  name: sconce-local
current-context: sconce-local
KC
  api() { curl -sf --cacert pki/ca.crt -H "Authorization: Bearer $token" "https://127.0.0.1:$api_port$1"; }
  local ready=
  for _ in $(seq 1 240); do api /readyz >/dev/null 2>&1 && { ready=1; break; }; sleep 0.25; done
  [ -n "$ready" ] || { log "kube-apiserver not ready"; tail -20 logs/kube-apiserver.log >&2; exit 1; }
  log "kube-apiserver ready on https://127.0.0.1:$api_port"
  if [ -z "${NO_KCM:-}" ]; then
    # no cloud, no node lifecycle: the deployment, replicaset, endpoints, GC, namespace and SA controllers run
    "$BIN"/kube-controller-manager --kubeconfig="$run/kubeconfig" --bind-address=127.0.0.1 --port=0 --secure-port=0 \
      --leader-elect=false --use-service-account-credentials=false \
      --service-account-private-key-file=pki/sa.key --root-ca-file=pki/ca.crt \
      --cluster-signing-cert-file=pki/ca.crt --cluster-signing-key-file=pki/ca.key \
      --controllers='*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service,-persistentvolume-binder,-attachdetach,-persistentvolume-expander' \
      --horizontal-pod-autoscaler-sync-period=5s > logs/kube-controller-manager.log 2>&1 8>&- 9>&- &
    echo $! > kcm.pid
    for _ in $(seq 1 120); do api /api/v1/namespaces/default/serviceaccounts/default >/dev/null 2>&1 && break; sleep 0.25; done
    log "kube-controller-manager up"
  fi
  echo "$run/kubeconfig"
}

running() {
  local run=$1
  [ -f "$run/kubeconfig" ] && [ -f "$run/apiserver.pid" ] && kill -0 "$(cat "$run/apiserver.pid")" 2>/dev/null || return 1
  local server token
  server=$(grep -o 'https://127.0.0.1:[0-9]*' "$run/kubeconfig")
  token=$(cut -d, -f1 "$run/pki/tokens.csv")
  curl -sf --cacert "$run/pki/ca.crt" -H "Authorization: Bearer $token" "$server/readyz" >/dev/null
}

ensure() {
  local run=${1:?usage: k8s.sh ensure RUN_DIR}
  mkdir -p "$run"; run=$(cd "$run" && pwd)
  exec 8>"$run.lock"; flock 8
  if running "$run"; then echo "$run/kubeconfig"; return 0; fi
  stop "$run"; rm -rf "$run"
  start "$run"
}

stop() {
  local run=${1:?usage: k8s.sh stop RUN_DIR}
  for c in kcm apiserver etcd; do
    local f=$run/$c.pid; [ -f "$f" ] || continue; local p; p=$(cat "$f")
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$p" 2>/dev/null || true; rm -f "$f"
  done
}

case "${1:-}" in
  setup) setup ;;
  kubectl) fetch_kubectl ;;
  start) start "${2:-}" ;;
  ensure) ensure "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 setup | kubectl | start RUN_DIR | ensure RUN_DIR | stop RUN_DIR" >&2; exit 2 ;;
esac
