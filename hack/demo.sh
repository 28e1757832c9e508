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

step "build sconce, sconce-server, sconce-train and the node agent"
cargo build -q -p sconce -p sconce-server -p sconce-devtools -p sconce-train
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

step "train the digits model (scikit-learn's digits, 64 -> 64 relu -> 64 relu -> 10 softmax, Adam, 5-fold CV)"
DIGITS=$(bash hack/fetch-digits.sh | tail -1)
"$TARGET/sconce-train" fit --data "$DIGITS" --label target --hidden 64,64 --optimizer adam \
  --learning-rate 0.001 --epochs 30 --batch-size 32 --l2 1e-4 --folds 5 --test-split 0.2 --seed 42 \
  --version 1 --out "$DEMO/models/digits" 2>&1 | grep -E 'cross-validation|held-out test|wrote'

step "start the node agent and the operator"
"$TARGET/sconce-dev" node-agent --kubeconfig "$KUBECONFIG" --ip-prefix 127.0.9 \
  --server-binary "$TARGET/sconce-server" --log-dir "$DEMO/logs" > "$DEMO/logs/node-agent.log" 2>&1 &
pids+=($!)
kubectl apply -f crds/modeldeployments.sconce.dev.yaml 2>/dev/null
kubectl wait --for=condition=Established crd/modeldeployments.sconce.dev --timeout=60s 2>/dev/null
"$TARGET/sconce" --admin-addr 127.0.0.1:0 > "$DEMO/logs/operator.log" 2>&1 &
pids+=($!)

step "kubectl apply -f examples/digits.yaml"
sed "s|file:///var/lib/sconce/models/digits|file://$DEMO/models/digits|" examples/digits.yaml | kubectl apply -f - 2>/dev/null
kubectl wait --for=condition=Ready modeldeployment/digits --timeout=180s 2>/dev/null
kubectl get modeldeployments,deployments,pods -o wide 2>/dev/null

step "V2 inference: the last 3 digits of the data set, one request per serving pod"
# Endpoints reject loopback pod IPs on 1.20; the EndpointSlice controller lists them.
IPS=$(kubectl get endpointslices -l kubernetes.io/service-name=digits \
  -o jsonpath='{.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}' 2>/dev/null)
python3 - "$DIGITS" $IPS <<'PY'
import csv, json, sys, urllib.request
rows = list(csv.DictReader(open(sys.argv[1])))[-3:]
features = [[float(r[f"pixel_{i}"]) for i in range(64)] for r in rows]
for ip in sys.argv[2:]:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [len(rows), 64],
                        "data": [x for f in features for x in f]}]}
    req = urllib.request.Request(f"http://{ip}:8080/v2/models/digits/infer", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    out = json.load(urllib.request.urlopen(req, timeout=10))["outputs"][0]
    probs = [out["data"][i * 10:(i + 1) * 10] for i in range(len(rows))]
    print(f"POST http://{ip}:8080/v2/models/digits/infer (model version {json.load(urllib.request.urlopen(f'http://{ip}:8080/v2/models/digits', timeout=10)).get('versions')})")
    for r, p in zip(rows, probs):
        guess = max(range(10), key=p.__getitem__)
        print(f"  true digit {r['target']}: predicted {guess} (p={p[guess]:.4f})")
PY
step "done: ModelDeployment digits is Ready and answered"

if [ "$KEEP" = "--keep" ]; then
  echo "export KUBECONFIG=$KUBECONFIG   # then: kubectl get mdep; logs in $DEMO/logs. Ctrl-C stops."
  while true; do sleep 3600; done
fi
