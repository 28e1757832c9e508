#!/usr/bin/env bash
# The main job on an embedded default: a real local Kubernetes 1.20 (etcd, apiserver,
# controller-manager, scheduler, and a node: kubelet + containerd + kube-proxy) in a network
# namespace of its own, Sconce installed with its Helm chart (the operator runs in-cluster from
# its image, two replicas with leader election), and an example ModelDeployment that runs the
# sconce-server image on the node, becomes Ready and answers predictions through its Service.
#
#   hack/demo.sh            run, print the predictions, stop everything
#   hack/demo.sh --keep     leave it running until Ctrl-C (prints how to use kubectl against it)
#
# Needs root (network namespace, mounts, cgroups). Everything it starts is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KEEP=${1:-}
DEMO=${SCONCE_DEMO_DIR:-$HOME/.cache/sconce/demo}
T0=$(date +%s)
step() { echo "=== [$(( $(date +%s) - T0 ))s] $*"; }

step "prerequisites and Kubernetes binaries (built once into ~/.cache/sconce)"
[ "$(id -u)" = 0 ] || { echo "hack/demo.sh needs root (the local plane uses a network namespace)" >&2; exit 1; }
need_apt=()
command -v containerd >/dev/null || need_apt+=(containerd)
command -v runc >/dev/null || need_apt+=(runc)
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v conntrack >/dev/null || need_apt+=(conntrack)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
command -v kubectl >/dev/null || bash hack/k8s.sh kubectl
export PATH=$HOME/.cache/sconce/k8s-1.20.2/bin:$PATH
bash hack/k8s.sh setup

step "build sconce, sconce-server and sconce-train; the images; Helm (helm-sdkpy, cached)"
cargo build -q -p sconce -p sconce-server -p sconce-train
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/debug
bash hack/images.sh "$TARGET" | grep -v '^/' || true

rm -rf "$DEMO"; mkdir -p "$DEMO"
# everything runs in the plane: stopping it stops all
cleanup() { bash "$ROOT/hack/k8s.sh" stop "$DEMO/cluster"; }
trap cleanup EXIT

step "start Kubernetes: control plane and a node"
KUBECONFIG=$(bash hack/k8s.sh start "$DEMO/cluster" | tail -1); export KUBECONFIG
kubectl get nodes -o wide 2>/dev/null

step "train the digits model (scikit-learn's digits, 64 -> 64 relu -> 64 relu -> 10 softmax, Adam, 5-fold CV)"
DIGITS=$(bash hack/fetch-digits.sh | tail -1)
"$TARGET/sconce-train" fit --data "$DIGITS" --label target --hidden 64,64 --optimizer adam \
  --learning-rate 0.001 --epochs 30 --batch-size 32 --l2 1e-4 --folds 5 --test-split 0.2 --seed 42 \
  --version 1 --out "$DEMO/models/digits" 2>&1 | grep -E 'cross-validation|held-out test|wrote'
# the server runs as uid 65532 in its pod
chmod -R a+rX "$DEMO/models"

step "helm install sconce charts/sconce: the CRD and the operator (2 replicas, in-cluster, image localhost/sconce:dev)"
HELM_PYTHONPATH=$(bash hack/fetch-helm.sh | tail -1)
PYTHONPATH=$HELM_PYTHONPATH python3 hack/helm.py install sconce charts/sconce --namespace sconce-system \
  --values-json '{"image": {"repository": "localhost/sconce", "tag": "dev"},
                  "server": {"image": "localhost/sconce-server:dev"}}' \
  | python3 -c 'import json, sys; r = json.load(sys.stdin); print("release", r["name"], "revision", r["revision"], r["status"])'
kubectl -n sconce-system get pods -o wide 2>/dev/null
echo "leader: $(kubectl -n sconce-system get lease sconce -o jsonpath='{.spec.holderIdentity}' 2>/dev/null)"

step "kubectl apply -f examples/digits.yaml"
sed "s|file:///var/lib/sconce/models/digits|file://$DEMO/models/digits|" examples/digits.yaml | kubectl apply -f - 2>/dev/null
# kubectl 1.20's wait fails at once on an object with no status.conditions yet: first let the
# operator write its first status
for _ in $(seq 1 60); do
  [ -n "$(kubectl get modeldeployment/digits -o jsonpath='{.status.conditions}' 2>/dev/null)" ] && break
  sleep 0.5
done
kubectl wait --for=condition=Ready modeldeployment/digits --timeout=180s 2>/dev/null
kubectl get modeldeployments,deployments,pods,services -o wide 2>/dev/null

step "V2 inference through the Service (ClusterIP, kube-proxy): the last 3 digits of the data set"
CLUSTER_IP=$(kubectl get service digits -o jsonpath='{.spec.clusterIP}' 2>/dev/null)
# kube-proxy programs a new Service's rules a moment after the apiserver has it
for _ in $(seq 1 60); do curl -sf -m 2 "http://$CLUSTER_IP/v2/health/ready" >/dev/null && break; sleep 0.5; done
python3 - "$DIGITS" "$CLUSTER_IP" <<'PY'
import csv, json, sys, urllib.request
rows = list(csv.DictReader(open(sys.argv[1])))[-3:]
base = f"http://{sys.argv[2]}"
features = [[float(r[f"pixel_{i}"]) for i in range(64)] for r in rows]
body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [len(rows), 64],
                    "data": [x for f in features for x in f]}]}
req = urllib.request.Request(f"{base}/v2/models/digits/infer", json.dumps(body).encode(),
                             {"content-type": "application/json"})
answer = json.load(urllib.request.urlopen(req, timeout=10))
out = answer["outputs"][0]
probs = [out["data"][i * 10:(i + 1) * 10] for i in range(len(rows))]
print(f"POST {base}/v2/models/digits/infer (model version {answer.get('model_version')!r})")
for r, p in zip(rows, probs):
    guess = max(range(10), key=p.__getitem__)
    print(f"  true digit {r['target']}: predicted {guess} (p={p[guess]:.4f})")
PY
step "train version 2 (another seed) and roll it out as a canary: 50% under analysis for 10 s, then all"
"$TARGET/sconce-train" fit --data "$DIGITS" --label target --hidden 64,64 --optimizer adam \
  --learning-rate 0.001 --epochs 30 --batch-size 32 --l2 1e-4 --folds 5 --test-split 0.2 --seed 7 \
  --version 2 --out "$DEMO/models/digits-v2" 2>&1 | grep -E 'held-out test|wrote'
chmod -R a+rX "$DEMO/models"
# clients keep calling while the version changes: every answer is counted
python3 - "$DIGITS" "$CLUSTER_IP" "$DEMO/load.json" <<'PY' &
import csv, json, os, sys, time, urllib.request
row = list(csv.DictReader(open(sys.argv[1])))[-1]
body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64],
                               "data": [float(row[f"pixel_{i}"]) for i in range(64)]}]}).encode()
url, out, tally = f"http://{sys.argv[2]}/v2/models/digits/infer", sys.argv[3], {}
while not os.path.exists(out + ".stop"):
    try:
        req = urllib.request.Request(url, body, {"content-type": "application/json"})
        answer = json.load(urllib.request.urlopen(req, timeout=5))
        key = "version " + answer.get("model_version", "?")
    except Exception as e:  # a failed request is what the demo must show never happens
        key = f"failed: {type(e).__name__}"
    tally[key] = tally.get(key, 0) + 1
    time.sleep(0.02)
json.dump(tally, open(out, "w"))
PY
LOAD_PID=$!
{
  sed -e "s|file:///var/lib/sconce/models/digits|file://$DEMO/models/digits-v2|" \
    -e 's|version: "1"|version: "2"|' examples/digits.yaml
  cat <<'YAML'
  rollout:
    steps: [{setWeight: 50}, {pause: {duration: 10s}}]
    analysis: {interval: 5s, minRequests: 5, maxErrorRate: 0.01}
YAML
} | kubectl apply -f - 2>/dev/null
# `kubectl get mdep -w`, but a line only when something other than AGE changed
kubectl get mdep digits 2>/dev/null | sed -n 1p
last=""
for _ in $(seq 1 180); do
  line=$(kubectl get mdep digits 2>/dev/null | tail -n +2 || true)
  key=$(echo "$line" | awk '{$NF = ""; print}')
  [ "$key" != "$last" ] && { echo "$line"; last=$key; }
  phase=$(kubectl get mdep digits -o jsonpath='{.status.rolloutPhase}' 2>/dev/null || true)
  case "$phase" in Succeeded|RolledBack|Failed) break ;; esac
  sleep 1
done
touch "$DEMO/load.json.stop"; wait "$LOAD_PID"
echo "requests during the rollout, by outcome: $(cat "$DEMO/load.json")"
kubectl get mdep digits -o jsonpath='{range .status.history[*]}  {.version}: {.outcome} ({.reason}){"\n"}{end}' 2>/dev/null
step "done: ModelDeployment digits is Ready, answered through its Service, and rolled out version 2"

if [ "$KEEP" = "--keep" ]; then
  echo "export KUBECONFIG=$KUBECONFIG   # then: kubectl get mdep; kubectl -n sconce-system logs deploy/sconce. Ctrl-C stops."
  while true; do sleep 3600; done
fi
