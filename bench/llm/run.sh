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
# Built from source for this machine's CPU: every instruction set /proc/cpuinfo lists, as
# GGML_NATIVE would pick, except AMX. AMX tiles need the kernel to grant the process their state,
# which some VMs refuse: a native build on such a machine (Xeon with AMX under firecracker) died
# with SIGSEGV at `ldtilecfg` in ggml_backend_amx_mul_mat on its first completion.
cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx_vnni:AVX_VNNI avx512f:AVX512 \
            avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
  case "$cpu_flags" in *" ${pair%%:*} "*) CMAKE_ARGS+=" -DGGML_${pair#*:}=ON" ;; esac
done
export CMAKE_ARGS
stamp="$(cat "$REQ") $CMAKE_ARGS"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$stamp" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} "$VENV/bin/pip" install --quiet \
    --no-cache-dir --force-reinstall --no-deps -r "$REQ"
  "$VENV/bin/pip" install --quiet -r "$REQ"
  echo "$stamp" >"$VENV/.requirements"
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
