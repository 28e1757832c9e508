#!/usr/bin/env python3
"""Keep a shared Cargo target dir from filling the disk.

Every build of a changed crate (and every worktree with its own flags) leaves a new
`<crate>-<hash>` artifact beside the old ones; nothing removes them, and with test binaries
of 200-800 MB each the cache grew to 66 GB. Executables (test binaries, examples) are what
is large, and only the newest of each name is ever run, so this keeps only the newest
executable of each name in `*/deps` and `*/examples` and drops incremental caches.
Libraries are left alone: `cargo check` and `cargo build` (and build scripts with other
features) legitimately keep several of the same crate, and removing one would rebuild its
dependents every run. Anything removed is rebuilt on demand, never used stale.

usage: prune_target.py TARGET_DIR
"""
import collections
import os
import re
import shutil
import sys

MIN_FREE_BYTES = 25 * 10**9
ARTIFACT = re.compile(r"^(.*)-([0-9a-f]{16})(\..*)?$")


def prune_dir(directory):
    groups = collections.defaultdict(list)
    for name in os.listdir(directory):
        match = ARTIFACT.match(name)
        path = os.path.join(directory, name)
        if match and not match.group(3) and os.path.isfile(path) and os.access(path, os.X_OK):
            groups[match.group(1)].append(name)
    freed = 0
    for names in groups.values():
        paths = sorted((os.path.join(directory, n) for n in names), key=os.path.getmtime)
        for stale in paths[:-1]:
            freed += os.path.getsize(stale)
            os.remove(stale)
    return freed


def main():
    target = sys.argv[1]
    freed = 0
    for profile in ("debug", "release"):
        for sub in ("deps", "examples"):
            directory = os.path.join(target, profile, sub)
            if os.path.isdir(directory):
                freed += prune_dir(directory)
        incremental = os.path.join(target, profile, "incremental")
        if os.path.isdir(incremental):
            shutil.rmtree(incremental, ignore_errors=True)
    print(f"pruned {freed / 1e9:.1f} GB of stale executables from {target}")
    # Other users of a shared disk can fill it too: below this much free space a cold build
    # (slower, but it fits) is better than a link that fails half-way.
    free = shutil.disk_usage(target).free if os.path.isdir(target) else None
    if free is not None and free < MIN_FREE_BYTES:
        for profile in ("debug", "release"):
            shutil.rmtree(os.path.join(target, profile), ignore_errors=True)
        print(f"only {free / 1e9:.1f} GB free: removed {target}'s builds, rebuilding from nothing")


if __name__ == "__main__":
    main()
