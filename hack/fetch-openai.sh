#!/usr/bin/env bash
# Installs the official `openai` Python client (and its dependencies) into a pip --target cache
# and prints the directory to put on PYTHONPATH. Used by server/tests/openai_client.rs.
#
#   SCONCE_PIP_CACHE   cache root (default ~/.cache/sconce/pip); the client goes to <root>-openai
set -euo pipefail

dir="${SCONCE_PIP_CACHE:-$HOME/.cache/sconce/pip}-openai"
version="3.57.0"
if [ ! -f "$dir/.openai-$version" ]; then
  rm -rf "$dir"
  mkdir -p "$dir"
  python3 -m pip install --quiet --disable-pip-version-check --target "$dir" "openai==$version" >&2
  touch "$dir/.openai-$version"
fi
echo "$dir"
