#!/usr/bin/env bash
# Installs the official `openai` Python client (pinned) into a cached venv and prints the venv's
# python. The server tests drive the embeddings, models, chat and completions routes through
# it (server/tests/openai_client.rs), on loopback only.
#
#   SCONCE_CACHE   cache directory (default ~/.cache/sconce)
set -euo pipefail

version="3.57.0"
venv="${SCONCE_CACHE:-$HOME/.cache/sconce}/openai-venv"
stamp="$venv/.openai-$version"
if [ ! -f "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "openai==$version" >&2
  touch "$stamp"
fi
"$venv/bin/python" -c 'import openai' >&2
echo "$venv/bin/python"
