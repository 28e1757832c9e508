# Shared by hack/*.sh: logging and a private apt configuration (nothing system-wide changes).
# shellcheck shell=bash

SCONCE_CACHE=${SCONCE_CACHE:-$HOME/.cache/sconce}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { echo "+++ [$(basename "$0" .sh) $(date +%H:%M:%S)] $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

# private_apt WORK_DIR SUITE: fills the array APT (apt-get options using lists under WORK_DIR
# only, with deb and deb-src lines for SUITE) and runs `apt-get update` with them.
private_apt() {
  local work=$1 suite=$2
  mkdir -p "$work"/apt/{lists/partial,archives/partial,etc}
  cat > "$work/apt/etc/sources.list" <<SL
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $DEBIAN_MIRROR $suite main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $DEBIAN_MIRROR $suite main
SL
  APT=(-o "Dir::State::Lists=$work/apt/lists" -o "Dir::Etc::SourceList=$work/apt/etc/sources.list"
       -o "Dir::Etc::SourceParts=/dev/null" -o "Dir::Cache::Archives=$work/apt/archives"
       -o "Dir::State::status=/dev/null" -o "APT::Sandbox::User=root")
  apt-get "${APT[@]}" -qq update
}
