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
HACK=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/lib/common.sh
. "$HACK/lib/common.sh"
# shellcheck source=hack/lib/plane.sh
. "$HACK/lib/plane.sh"

K8S_HOME=${SCONCE_K8S_HOME:-$SCONCE_CACHE/k8s-1.20.2}
BIN=$K8S_HOME/bin
SRC_VERSION=1.20.5+really1.20.2-1.1+deb12u1

# Control plane and node, all from one Go build of the same tree.
K8S_CMDS="kube-apiserver kube-controller-manager kubelet kube-scheduler kube-proxy"
have_binaries() {
  local b
  for b in $K8S_CMDS etcd pause; do [ -x "$BIN/$b" ] || return 1; done
}

setup() {
  if have_binaries; then log "binaries present in $BIN"; return 0; fi
  # one builder at a time (tests and the demo may both call setup)
  mkdir -p "$K8S_HOME"
  exec 9>"$K8S_HOME/.setup.lock"; flock 9
  if have_binaries; then log "binaries present in $BIN"; return 0; fi
  local work=$K8S_HOME/build
  rm -rf "$work"; mkdir -p "$work"/{debs,prefix,src} "$BIN"
  log "1/5 apt-get update (private lists)"
  private_apt "$work" bookworm
  local o=("${APT[@]}")
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
  log "4/5 make $K8S_CMDS (about 15 minutes on 2 cores)"
  (
    export GOROOT=$work/prefix/usr/lib/go-1.19
    export PATH=$GOROOT/bin:$work/prefix/usr/bin:$PATH
    export LD_LIBRARY_PATH=$work/prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    # providerless: no in-tree cloud providers or credential helpers (a kubelet with them asks
    # cloud metadata endpoints for credentials at start-up)
    export GOPROXY=off GOFLAGS="-mod=vendor -tags=providerless" GOTOOLCHAIN=local CGO_ENABLED=0 HOME=$work/home
    mkdir -p "$HOME"; cd "$k"
    local what="" c
    for c in $K8S_CMDS; do what+=" cmd/$c"; done
    make WHAT="${what# }" >"$work/make.log" 2>&1 || { tail -40 "$work/make.log"; exit 1; }
  )
  log "5/5 install binaries"
  for c in $K8S_CMDS; do cp "$k/_output/bin/$c" "$BIN/"; done
  # the pod sandbox ("pause") image's one binary, from the same tree
  gcc -Os -static -DVERSION=v1.20.2-sconce -o "$BIN/pause" "$k/build/pause/linux/pause.c"
  strip "$BIN/pause"
  cp "$work/prefix/usr/bin/etcd" "$work/prefix/usr/bin/etcdctl" "$BIN/"
  rm -rf "$work"
  "$BIN/kube-apiserver" --version
}

# Machines without kubectl get Debian trixie's client (1.32; Debian has no newer apiserver).
fetch_kubectl() {
  [ -x "$BIN/kubectl" ] && { log "kubectl present in $BIN"; return 0; }
  local work=$K8S_HOME/kubectl-build
  rm -rf "$work"; mkdir -p "$work"/{debs,prefix} "$BIN"
  log "downloading kubectl (Debian trixie kubectl)"
  private_apt "$work" trixie
  local o=("${APT[@]}")
  (cd "$work/debs" && apt-get "${o[@]}" -qq download kubectl)
  dpkg -x "$work"/debs/kubectl_*.deb "$work/prefix"
  cp "$work/prefix/usr/bin/kubectl" "$BIN/kubectl"
  rm -rf "$work"
  "$BIN/kubectl" version --client
}

ensure() {
  local run=${1:?usage: k8s.sh ensure RUN_DIR}
  mkdir -p "$run"; run=$(cd "$run" && pwd)
  exec 8>"$run.lock"; flock 8
  if plane_running "$run"; then echo "$run/kubeconfig"; return 0; fi
  plane_stop "$run"; rm -rf "$run"
  plane_start "$run"
}

# Load (again) the images hack/images.sh built into a running plane's containerd.
load_images() {
  local run=${1:?usage: k8s.sh load-images RUN_DIR}
  local images=${SCONCE_IMAGES:-$SCONCE_CACHE/images} image
  for image in "$images"/*.tar; do
    ctr --address "$run/containerd.sock" -n k8s.io images import "$image" >/dev/null
    log "loaded $(basename "$image")"
  done
}

case "${1:-}" in
  setup) setup ;;
  kubectl) fetch_kubectl ;;
  start) plane_start "${2:?usage: k8s.sh start RUN_DIR}" ;;
  ensure) ensure "${2:-}" ;;
  stop) plane_stop "${2:?usage: k8s.sh stop RUN_DIR}" ;;
  load-images) load_images "${2:-}" ;;
  *) echo "usage: $0 setup | kubectl | start RUN_DIR | ensure RUN_DIR | stop RUN_DIR | load-images RUN_DIR" >&2; exit 2 ;;
esac
