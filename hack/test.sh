#!/usr/bin/env bash
# Every test Sconce has: formatting, lints, CRD drift, unit tests, the operator against a real
# Kubernetes 1.20 (apiserver, controller-manager, scheduler, and a real node: kubelet +
# containerd + kube-proxy running the images built here), end to end, the inference server
# over real HTTP and the trainer. `.ci/run` runs exactly this. Needs root (the plane runs in a
# network namespace of its own; see hack/lib/plane.sh).
#
# Heavy things are cached outside the clone: Kubernetes in ~/.cache/sconce/k8s-1.20.2, image
# layers in ~/.cache/sconce/images, Python packages and fixtures in ~/.cache/sconce/{pip,data}.
# Delete ~/.cache/sconce to rebuild from nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T0=$(date +%s)
step() { echo "=== [$(( $(date +%s) - T0 ))s] $*"; }

step "prerequisites"
need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v flock >/dev/null || need_apt+=(util-linux)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip python3-venv)
# the plane's node
command -v containerd >/dev/null || need_apt+=(containerd)
command -v runc >/dev/null || need_apt+=(runc)
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v conntrack >/dev/null || need_apt+=(conntrack)
# the Argo CD health check (tests/argocd_health.rs): Argo CD runs Lua 5.1 (gopher-lua)
command -v lua5.1 >/dev/null || need_apt+=(lua5.1)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
command -v kubectl >/dev/null || bash hack/k8s.sh kubectl
export PATH=$HOME/.cache/sconce/k8s-1.20.2/bin:$PATH
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt

step "Kubernetes binaries (built once, cached)"
bash hack/k8s.sh setup

step "test fixtures"
if [ -f hack/fetch-minilm.sh ] && [ -z "${SCONCE_MINILM_DIR:-}" ]; then
  SCONCE_MINILM_DIR=$(bash hack/fetch-minilm.sh | tail -1); export SCONCE_MINILM_DIR
fi
if [ -f hack/fetch-smollm2.sh ] && [ -z "${SCONCE_SMOLLM2_DIR:-}" ]; then
  SCONCE_SMOLLM2_DIR=$(bash hack/fetch-smollm2.sh | tail -1); export SCONCE_SMOLLM2_DIR
fi
if [ -f hack/fetch-openai.sh ] && [ -z "${SCONCE_OPENAI_PYTHON:-}" ]; then
  SCONCE_OPENAI_PYTHON=$(bash hack/fetch-openai.sh | tail -1); export SCONCE_OPENAI_PYTHON
fi
if [ -f hack/fetch-helm.sh ] && [ -z "${SCONCE_HELM_PYTHONPATH:-}" ]; then
  SCONCE_HELM_PYTHONPATH=$(bash hack/fetch-helm.sh | tail -1); export SCONCE_HELM_PYTHONPATH
fi
if [ -f hack/fetch-digits.sh ] && [ -z "${SCONCE_DIGITS_CSV:-}" ]; then
  SCONCE_DIGITS_CSV=$(bash hack/fetch-digits.sh | tail -1); export SCONCE_DIGITS_CSV
fi

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "build"
# Old artifacts of every earlier build pile up in a shared target dir (66 GB once, and CI
# then failed with a full disk): keep only the newest of each.
python3 hack/lib/prune_target.py "${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --workspace --all-targets
# Tests that spawn binaries use these instead of running `cargo build -p ...`, whose narrower
# feature set would recompile shared dependencies.
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/debug
export SCONCE_SERVER_BINARY=$TARGET/sconce-server SCONCE_DEV_BINARY=$TARGET/sconce-dev

step "images (sconce-server, sconce, pause) for the node"
bash hack/images.sh "$TARGET"

if [ -z "${SCONCE_TEST_KUBECONFIG:-}" ]; then
  step "start a local Kubernetes: control plane and a real node"
  RUN_DIR=$(mktemp -d -t sconce-k8s-XXXX)
  trap 'bash "$ROOT/hack/k8s.sh" stop "$RUN_DIR"; rm -rf "$RUN_DIR"' EXIT
  SCONCE_TEST_KUBECONFIG=$(bash hack/k8s.sh start "$RUN_DIR" | tail -1); export SCONCE_TEST_KUBECONFIG
fi

step "tests"
cargo test --workspace --no-fail-fast
step "all tests passed"
