#!/usr/bin/env bash
# The main job on an embedded default: a real local control plane (etcd + kube-apiserver +
# kube-controller-manager 1.20), the local node agent standing in for kubelets, the Sconce
# operator, and an example ModelDeployment that becomes Ready and answers a real prediction.
#
#   hack/demo.sh            run, print the prediction, stop everything
#   hack/demo.sh --keep     leave it running until Ctrl-C (prints how to use kubectl against it)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KEEP=${1:-}
DEMO=${SCONCE_DEMO_DIR:-$HOME/.cache/sconce/demo}
T0=$(date +%s)
step() { echo "=== [$(( $(date +%s) - T0 ))s] $*"; }

step "prerequisites and control plane binaries (built once into ~/.cache/sconce)"
command -v kubectl >/dev/null || bash hack/k8s.sh kubectl
export PATH=$HOME/.cache/sconce/k8s-1.20.2/bin:$PATH
bash hack/k8s.sh setup

step "build sconce, sconce-server and the node agent"
cargo build -q -p sconce -p sconce-server -p sconce-devtools
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/debug

rm -rf "$DEMO"; mkdir -p "$DEMO/logs"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bash "$ROOT/hack/k8s.sh" stop "$DEMO/cluster"
}
trap cleanup EXIT

step "start the control plane"
KUBECONFIG=$(bash hack/k8s.sh start "$DEMO/cluster" | tail -1); export KUBECONFIG

step "make the demo model (1000 -> 64 relu -> 64 relu -> 10 softmax)"
"$TARGET/sconce-dev" make-model --out "$DEMO/models/mnist"

step "start the node agent and the operator"
"$TARGET/sconce-dev" node-agent --kubeconfig "$KUBECONFIG" --ip-prefix 127.0.9 \
  --server-binary "$TARGET/sconce-server" --log-dir "$DEMO/logs" > "$DEMO/logs/node-agent.log" 2>&1 &
pids+=($!)
kubectl apply -f crds/modeldeployments.sconce.dev.yaml 2>/dev/null
kubectl wait --for=condition=Established crd/modeldeployments.sconce.dev --timeout=60s 2>/dev/null
"$TARGET/sconce" --admin-addr 127.0.0.1:0 > "$DEMO/logs/operator.log" 2>&1 &
pids+=($!)

step "kubectl apply -f examples/mnist.yaml"
sed "s|file:///var/lib/sconce/models/mnist|file://$DEMO/models/mnist|" examples/mnist.yaml | kubectl apply -f - 2>/dev/null
kubectl wait --for=condition=Ready modeldeployment/mnist --timeout=180s 2>/dev/null
kubectl get modeldeployments,deployments,pods -o wide 2>/dev/null

step "a V2 inference request to each serving pod"
INPUT=$(python3 -c 'import json; print(json.dumps([round((i % 17) / 17, 4) for i in range(1000)]))')
for ip in $(kubectl get endpoints mnist -o jsonpath='{.subsets[*].addresses[*].ip}' 2>/dev/null); do
  echo "POST http://$ip:8080/v2/models/mnist/infer"
  curl -sf "http://$ip:8080/v2/models/mnist/infer" -H 'content-type: application/json' \
    -d "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[1,1000],\"data\":$INPUT}]}" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); d=r["outputs"][0]["data"]; print("  probabilities:", [round(x,4) for x in d]); print("  predicted class:", max(range(len(d)), key=d.__getitem__))'
done
step "done: ModelDeployment mnist is Ready and answered"

if [ "$KEEP" = "--keep" ]; then
  echo "export KUBECONFIG=$KUBECONFIG   # then: kubectl get mdep; logs in $DEMO/logs. Ctrl-C stops."
  while true; do sleep 3600; done
fi
