#!/usr/bin/env bash
# Exports scikit-learn's digits data set (BSD-3-Clause) to ~/.cache/sconce/data/digits.csv once and prints
# the path. scikit-learn is pip-installed into ~/.cache/sconce/pip/sklearn (no system packages touched).
set -euo pipefail

cache="${SCONCE_CACHE:-$HOME/.cache/sconce}"
out="$cache/data/digits.csv"
if [[ -s "$out" ]]; then
  echo "$out"
  exit 0
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
site="$cache/pip/sklearn"
if ! PYTHONPATH="$site" "$python" -c 'import sklearn' 2>/dev/null; then
  "$python" -m pip install --quiet --disable-pip-version-check --target "$site" scikit-learn >&2
fi
mkdir -p "$(dirname "$out")"
PYTHONPATH="$site" "$python" "$repo/train/data/export_digits.py" "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
