"""Downloads one project's source distribution from PyPI and checks it against the sha256 the
index publishes: `python3 fetch_sdist.py PROJECT VERSION DEST`.

`pip download --no-binary` would also prepare the package's build metadata (installing its build
backend, and with `:all:` compiling cmake from source); the benchmark wants only the archive.
"""

import hashlib
import json
import sys
import time
import urllib.request

INDEX = "https://pypi.org/simple/{}/"


def fetch(project, version, dest):
    req = urllib.request.Request(
        INDEX.format(project), headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        files = json.load(r)["files"]
    name = f"{project.replace('-', '_')}-{version}.tar.gz"
    match = [f for f in files if f["filename"] == name]
    if not match:
        sys.exit(f"fetch_sdist: {name} is not on the index")
    want = match[0]["hashes"]["sha256"]
    digest = hashlib.sha256()
    with urllib.request.urlopen(match[0]["url"], timeout=600) as r, open(dest, "wb") as out:
        while chunk := r.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != want:
        raise OSError(f"{name} has sha256 {digest.hexdigest()}, the index says {want}")
    print(f"fetch_sdist: {name} ({want[:12]}...)", file=sys.stderr)


def main():
    project, version, dest = sys.argv[1:4]
    # Network errors and a truncated download are retried, as pip retries: a CI run should not
    # fail on one dropped connection.
    for attempt in range(1, 4):
        try:
            return fetch(project, version, dest)
        except OSError as e:
            print(f"fetch_sdist: attempt {attempt}: {e}", file=sys.stderr)
            time.sleep(5 * attempt)
    sys.exit("fetch_sdist: giving up after 3 attempts")


if __name__ == "__main__":
    main()
