#!/usr/bin/env bash
# Container images of Sconce, built here without Docker or a registry:
#   sconce-server  (server/Dockerfile's final stage)   localhost/sconce-server:dev
#   sconce         (Dockerfile's final stage, the operator) localhost/sconce:dev
#   pause          (the pod sandbox, from the Kubernetes tree's pause.c) localhost/pause:3.4.1
#
#   hack/images.sh [BINARY_DIR]   BINARY_DIR holds sconce and sconce-server (default: the cargo
#                                 debug target dir); writes docker-archive tarballs to
#                                 $SCONCE_IMAGES (~/.cache/sconce/images) for `ctr images import`
#                                 (the base layer is cached in its layers/ subdirectory)
#
# The base is what gcr.io/distroless/cc-debian12 holds, made from Debian bookworm's own .debs
# (libc6, libgcc-s1, base-files, netbase, tzdata, ca-certificates) plus passwd/group with the
# `nonroot` user 65532: no shell, no package manager. It is cached until those packages change.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=hack/lib/common.sh
. hack/lib/common.sh
BIN_DIR=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}
OUT=${SCONCE_IMAGES:-$SCONCE_CACHE/images}
K8S_BIN=${SCONCE_K8S_HOME:-$SCONCE_CACHE/k8s-1.20.2}/bin
BASE_DEBS="libc6 libgcc-s1 base-files netbase tzdata ca-certificates"
mkdir -p "$OUT"
for b in sconce sconce-server; do
  [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b is missing: run cargo build first"
done
[ -x "$K8S_BIN/pause" ] || die "$K8S_BIN/pause is missing: run hack/k8s.sh setup first"

# --- base layer -----------------------------------------------------------------------------
base_layer() {
  local work=$OUT/base-build
  rm -rf "$work"; mkdir -p "$work/debs" "$work/rootfs"
  private_apt "$work" bookworm
  (cd "$work/debs" && apt-get "${APT[@]}" -qq download $BASE_DEBS)
  local stamp; stamp=$(cd "$work/debs" && ls ./*.deb | sort | sha256sum | cut -c1-16)
  local base=$OUT/layers/base-$stamp.tar
  if [ -f "$base" ]; then rm -rf "$work"; echo "$base"; return; fi
  local r=$work/rootfs
  for d in "$work"/debs/*.deb; do dpkg -x "$d" "$r"; done
  rm -rf "$r"/usr/share/{doc,man,info,lintian,locale}
  mkdir -p "$r/etc/ssl/certs" "$r/home/nonroot" "$r/tmp"
  # what ca-certificates' postinst (update-ca-certificates) would write
  cat "$r"/usr/share/ca-certificates/mozilla/*.crt > "$r/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\nnonroot:x:65532:\n' > "$r/etc/group"
  chmod 1777 "$r/tmp"
  chown -R 0:0 "$r"; chown 65532:65532 "$r/home/nonroot"
  mkdir -p "$OUT/layers"; rm -f "$OUT"/layers/base-*.tar
  tar --sort=name --mtime=@0 --numeric-owner -C "$r" -cf "$base.tmp" .
  rm -rf "$work"
  mv "$base.tmp" "$base"
  echo "$base"
}

log "base layer from Debian bookworm: $BASE_DEBS"
BASE=$(base_layer)

# --- images ---------------------------------------------------------------------------------
STRIP=$OUT/stripped; mkdir -p "$STRIP"
for b in sconce sconce-server; do strip -o "$STRIP/$b" "$BIN_DIR/$b"; done
build() { python3 hack/lib/image_archive.py "$@"; }
build --dockerfile server/Dockerfile --base "$BASE" --file "/out/sconce-server=$STRIP/sconce-server" \
  --tag localhost/sconce-server:dev --out "$OUT/sconce-server.tar"
build --dockerfile Dockerfile --base "$BASE" --file "/out/sconce=$STRIP/sconce" \
  --tag localhost/sconce:dev --out "$OUT/sconce.tar"
printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$STRIP/pause.Dockerfile"
build --dockerfile "$STRIP/pause.Dockerfile" --file "pause=$K8S_BIN/pause" \
  --tag localhost/pause:3.4.1 --out "$OUT/pause.tar"
rm -rf "$STRIP"
echo "$OUT"
