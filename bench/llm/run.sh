#!/usr/bin/env bash
# Text generation benchmark: sconce-server (--format gguf) against llama.cpp's server
# (llama-cpp-python's `llama_cpp.server`, built from source by pip) on the same GGUF
# (SmolLM2-135M-Instruct Q4_1), on loopback, one server at a time. Not part of CI.
#
#   bash bench/llm/run.sh              # ~5 minutes once llama.cpp is built
#   BENCH_LLAMA_THREADS=2 bash bench/llm/run.sh   # llama.cpp with 2 decode threads too
#
# The llama.cpp venv is built once into ~/.cache/sconce/llama-cpp-venv (about 15 minutes of
# compiling on 2 cores the first time).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=${SCONCE_CACHE:-$HOME/.cache/sconce}
VENV=$CACHE/llama-cpp-venv
REQ=$ROOT/bench/llm/requirements.txt
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$REQ" "$VENV/.requirements"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  # Built from source: the CPU build llama.cpp's CMake picks for this machine.
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} "$VENV/bin/pip" install --quiet -r "$REQ"
  cp "$REQ" "$VENV/.requirements"
fi
MODEL_DIR=$(bash hack/fetch-smollm2.sh | tail -1)
if [ -z "${SCONCE_BIN:-}" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
  cargo build --release -p sconce-server
  SCONCE_BIN=$CARGO_TARGET_DIR/release/sconce-server
fi
OUT=$(mktemp -d -t sconce-llm-bench.XXXX)
# OpenBLAS tuning variables some machines set slow numpy down; nothing here uses them.
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$VENV/bin/python" bench/llm/bench_llm.py \
  --sconce "$SCONCE_BIN" --model-dir "$MODEL_DIR" --out "$OUT"
