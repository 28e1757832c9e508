#!/usr/bin/env bash
# Installs Helm v4 as a Python library (the PyPI wheel `helm-sdkpy`, Helm's Go code with cffi
# bindings) into a pip --target cache and prints the directory to put on PYTHONPATH.
# hack/helm.py drives it; the chart tests and hack/demo.sh use that.
#
#   SCONCE_PIP_CACHE   cache root (default ~/.cache/sconce/pip); the library goes to <root>-helm
#
# The wheel declares Python >= 3.12 but runs on 3.11 (measured: install, upgrade, uninstall,
# lint against Kubernetes 1.20), hence --ignore-requires-python.
set -euo pipefail

dir="${SCONCE_PIP_CACHE:-$HOME/.cache/sconce/pip}-helm"
version="0.1.32"
if [ ! -f "$dir/.helm-sdkpy-$version" ]; then
  rm -rf "$dir"
  mkdir -p "$dir"
  python3 -m pip install --quiet --disable-pip-version-check --ignore-requires-python \
    --target "$dir" "helm-sdkpy==$version" >&2
  touch "$dir/.helm-sdkpy-$version"
fi
echo "$dir"
