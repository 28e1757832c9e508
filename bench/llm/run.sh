#!/usr/bin/env bash
# Text generation benchmark: sconce-server (--format gguf) against llama.cpp's own server
# (`llama-server`, with parallel slots and continuous batching) on the same GGUF
# (SmolLM2-135M-Instruct Q4_1), on loopback, one server at a time. .ci/run runs it after the
# tests and does not fail on its verdicts.
#
#   bash bench/llm/run.sh                          # ~5 minutes once llama-server is built
#   BENCH_LLAMA_THREADS=2 bash bench/llm/run.sh    # llama-server with -t 2 instead of its default
#   BENCH_LLAMA_SLOTS=4 bash bench/llm/run.sh      # -np 4 instead of 8 (one slot per stream)
#
# llama-server is built once from the llama.cpp source vendored in llama-cpp-python's sdist
# (PyPI, the one source of llama.cpp this machine can reach; checksum from the index), with
# cmake and ninja from PyPI, into ~/.cache/sconce/llama-server (~10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=${SCONCE_CACHE:-$HOME/.cache/sconce}
LLAMA_CPP_PYTHON=0.3.36
# Built for this machine's CPU: every instruction set /proc/cpuinfo lists, as GGML_NATIVE would
# pick, except AMX. AMX tiles need the kernel to grant the process their state, which some VMs
# refuse: a native build on such a machine (Xeon with AMX under firecracker) died with SIGSEGV at
# `ldtilecfg` in ggml_backend_amx_mul_mat on its first completion.
cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx_vnni:AVX_VNNI avx512f:AVX512 \
            avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
  case "$cpu_flags" in *" ${pair%%:*} "*) CMAKE_ARGS+=" -DGGML_${pair#*:}=ON" ;; esac
done
# No web UI (it would be downloaded from Hugging Face), no HTTPS, no downloads of models.
CMAKE_ARGS+=" -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF"
CMAKE_ARGS+=" -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF"
CMAKE_ARGS+=" -DCMAKE_BUILD_TYPE=Release"

LLAMA_DIR=$CACHE/llama-server
LLAMA_SERVER=$LLAMA_DIR/build/bin/llama-server
stamp="llama-cpp-python $LLAMA_CPP_PYTHON $CMAKE_ARGS"
if [ ! -x "$LLAMA_SERVER" ] || [ "$(cat "$LLAMA_DIR/.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$LLAMA_DIR"
  mkdir -p "$LLAMA_DIR"
  python3 -m venv "$LLAMA_DIR/tools"
  "$LLAMA_DIR/tools/bin/pip" install --quiet --disable-pip-version-check --only-binary :all: \
    "cmake==4.4.5" "ninja==1.13.2"
  python3 bench/llm/fetch_sdist.py llama-cpp-python "$LLAMA_CPP_PYTHON" "$LLAMA_DIR/sdist.tar.gz"
  tar xzf "$LLAMA_DIR/sdist.tar.gz" -C "$LLAMA_DIR"
  src=$LLAMA_DIR/llama_cpp_python-$LLAMA_CPP_PYTHON/vendor/llama.cpp
  # shellcheck disable=SC2086 # CMAKE_ARGS is a list of flags
  "$LLAMA_DIR/tools/bin/cmake" -S "$src" -B "$LLAMA_DIR/build" -G Ninja \
    -DCMAKE_MAKE_PROGRAM="$LLAMA_DIR/tools/bin/ninja" $CMAKE_ARGS >"$LLAMA_DIR/configure.log"
  "$LLAMA_DIR/tools/bin/ninja" -C "$LLAMA_DIR/build" -j "${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    llama-server >"$LLAMA_DIR/build.log"
  echo "$stamp" >"$LLAMA_DIR/.stamp"
  # The binary is static: the source, the archive and the build tools (~400 MB) are not needed.
  rm -rf "$LLAMA_DIR/sdist.tar.gz" "$LLAMA_DIR/llama_cpp_python-$LLAMA_CPP_PYTHON" "$LLAMA_DIR/tools"
fi
MODEL_DIR=$(bash hack/fetch-smollm2.sh | tail -1)
if [ -z "${SCONCE_BIN:-}" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
  cargo build --release -p sconce-server
  SCONCE_BIN=$CARGO_TARGET_DIR/release/sconce-server
fi
OUT=$(mktemp -d -t sconce-llm-bench.XXXX)
python3 bench/llm/bench_llm.py --sconce "$SCONCE_BIN" --llama-server "$LLAMA_SERVER" \
  --model-dir "$MODEL_DIR" --out "$OUT"
