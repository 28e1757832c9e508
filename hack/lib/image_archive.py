#!/usr/bin/env python3
"""Builds a container image as a docker-archive tarball (what `docker save` writes and
`ctr images import` reads) without a daemon or registry.

The image is the final stage of a Dockerfile, with its `FROM` replaced by a base layer made
here: every instruction of that stage is honoured (COPY of the named binaries, USER, ENV,
EXPOSE, ENTRYPOINT, CMD, WORKDIR, LABEL) and any other instruction is an error, so the local
image cannot silently differ from what `docker build` makes elsewhere.

    image_archive.py --dockerfile server/Dockerfile --base base.tar \\
        --file /out/sconce-server=target/stripped/sconce-server \\
        --tag localhost/sconce-server:dev --out sconce-server.tar

Layers are written deterministically (sorted, mtime 0, owner root), so the same inputs give
the same image ID.
"""
import argparse
import hashlib
import io
import json
import os
import shlex
import sys
import tarfile

BASE_ENV = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
]


def final_stage(path):
    """Instructions of the Dockerfile's last stage as (KEYWORD, argument text)."""
    lines, current = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not current and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                current += line[:-1] + " "
                continue
            current += line
            lines.append(current.strip())
            current = ""
    stages, stage = [], None
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage = [("FROM", rest.strip())]
            stages.append(stage)
        elif stage is not None:
            stage.append((keyword, rest.strip()))
    if not stages:
        sys.exit(f"{path}: no FROM")
    return stages[-1]


def parse_pairs(text):
    """`K=V K2="v 2"` (or the legacy `K V`) as a list of (K, V)."""
    words = shlex.split(text)
    if words and "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]
    return [tuple(w.split("=", 1)) for w in words]


def layer_from_files(files):
    """An uncompressed layer holding `files` {path in image: host path}, mode 0755, root."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = set()
        for dest in sorted(files):
            parts = dest.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for dest in sorted(files):
            with open(files[dest], "rb") as src:
                data = src.read()
            info = tarfile.TarInfo(dest.strip("/"))
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build(args):
    stage = final_stage(args.dockerfile)
    sources = dict(f.split("=", 1) for f in args.file)
    config = {"User": "", "Env": list(BASE_ENV), "WorkingDir": "/", "Labels": {}}
    copies, used = {}, set()
    for keyword, rest in stage[1:]:
        if keyword == "COPY":
            words = [w for w in shlex.split(rest) if not w.startswith("--")]
            *srcs, dest = words
            for src in srcs:
                if src not in sources:
                    sys.exit(f"{args.dockerfile}: COPY {src}: pass --file {src}=HOST_PATH")
                target = dest if not dest.endswith("/") else dest + os.path.basename(src)
                copies[target] = sources[src]
                used.add(src)
        elif keyword == "USER":
            config["User"] = rest
        elif keyword == "ENV":
            for k, v in parse_pairs(rest):
                config["Env"] = [e for e in config["Env"] if not e.startswith(k + "=")]
                config["Env"].append(f"{k}={v}")
        elif keyword == "EXPOSE":
            for port in rest.split():
                port = port if "/" in port else port + "/tcp"
                config.setdefault("ExposedPorts", {})[port] = {}
        elif keyword in ("ENTRYPOINT", "CMD"):
            value = json.loads(rest)
            config["Entrypoint" if keyword == "ENTRYPOINT" else "Cmd"] = value
        elif keyword == "WORKDIR":
            config["WorkingDir"] = rest
        elif keyword == "LABEL":
            config["Labels"].update(dict(parse_pairs(rest)))
        else:
            sys.exit(f"{args.dockerfile}: {keyword} in the final stage is not supported here")
    unused = set(sources) - used
    if unused:
        sys.exit(f"--file {sorted(unused)} not used by any COPY in {args.dockerfile}")

    layers = []
    if args.base:
        with open(args.base, "rb") as f:
            layers.append(f.read())
    if copies:
        layers.append(layer_from_files(copies))
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"sconce hack/images.sh: {args.dockerfile}"}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_names = [d.split(":")[1] + "/layer.tar" for d in diff_ids]
    manifest = [{"Config": config_name, "RepoTags": [args.tag], "Layers": layer_names}]

    def add(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        tar.addfile(info, io.BytesIO(data))

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, "w") as tar:
        add(tar, config_name, config_bytes)
        for name, layer in zip(layer_names, layers):
            add(tar, name, layer)
        add(tar, "manifest.json", json.dumps(manifest).encode())
    os.replace(tmp, args.out)
    size = sum(len(layer) for layer in layers)
    print(f"{args.tag}: {size / 1e6:.1f} MB ({len(layers)} layers), image {config_name[:12]}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dockerfile", required=True)
    p.add_argument("--base", help="the base layer (an uncompressed tar of a root filesystem); none for FROM scratch")
    p.add_argument("--file", action="append", default=[], help="SRC=HOST_PATH for `COPY [--from=...] SRC ...`")
    p.add_argument("--tag", required=True)
    p.add_argument("--out", required=True)
    build(p.parse_args())


if __name__ == "__main__":
    main()
