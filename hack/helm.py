#!/usr/bin/env python3
"""A small `helm` command on Helm v4's Go library (the PyPI wheel helm-sdkpy; there is no helm
binary on these machines). PYTHONPATH must hold it: `PYTHONPATH=$(hack/fetch-helm.sh)`.

  helm.py lint CHART                           fails on any ERROR (or WARNING) message
  helm.py install NAME CHART [--values-json J] [--namespace NS] [--kubeconfig K] [--timeout S]
  helm.py upgrade NAME CHART [--values-json J] ...
  helm.py uninstall NAME ...
  helm.py status NAME ... | history NAME ...

install and upgrade wait until the release's objects are ready. Results are printed as JSON.
"""
import argparse
import asyncio
import json
import os
import sys

import helm_sdkpy as helm

# helm's support.Severity: 1 info, 2 warning, 3 error
SEVERITY = {1: "INFO", 2: "WARNING", 3: "ERROR"}


def lint(config, chart):
    result = asyncio.run(helm.Lint(config).run(chart))
    messages = result.get("messages") or result.get("Messages") or []
    worst = 0
    for m in messages:
        severity = m.get("Severity", m.get("severity", 0))
        worst = max(worst, severity)
        # helm-sdkpy serialises Go errors as {}: the path at least says where
        text = m.get("Err") or "(helm-sdkpy passes no message; an INFO on Chart.yaml is the missing icon)"
        print(f"[{SEVERITY.get(severity, severity)}] {m.get('Path') or '.'}: {text}")
    print(f"{len(messages)} message(s); worst severity {SEVERITY.get(worst, 'none')}")
    return 1 if worst >= 2 else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["lint", "install", "upgrade", "uninstall", "status", "history"])
    p.add_argument("name", help="release name (lint: the chart)")
    p.add_argument("chart", nargs="?")
    p.add_argument("--namespace", "-n", default="default")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    p.add_argument("--values-json", default="{}", help="values as one JSON object")
    p.add_argument("--timeout", type=int, default=300, help="seconds")
    a = p.parse_args()
    config = helm.Configuration(namespace=a.namespace, kubeconfig=a.kubeconfig)
    if a.action == "lint":
        return lint(config, a.name)
    values = json.loads(a.values_json)
    if a.action == "install":
        result = asyncio.run(helm.Install(config).run(
            a.name, a.chart, values=values, create_namespace=True, wait=True, timeout=a.timeout))
    elif a.action == "upgrade":
        result = asyncio.run(helm.Upgrade(config).run(
            a.name, a.chart, values=values, wait=True, timeout=a.timeout))
    elif a.action == "uninstall":
        result = asyncio.run(helm.Uninstall(config).run(a.name, wait=True, timeout=a.timeout))
    elif a.action == "status":
        result = asyncio.run(helm.Status(config).run(a.name))
    else:
        result = asyncio.run(helm.History(config).run(a.name))
    print(json.dumps(summary(result), default=str))
    return 0


def summary(result):
    """The release's name, namespace, revision and status (the whole result holds the chart)."""
    if isinstance(result, list):
        return [summary(r) for r in result]
    release = result.get("release", result) if isinstance(result, dict) else {}
    info = release.get("info") or {}
    return {k: v for k, v in {
        "name": release.get("name"),
        "namespace": release.get("namespace"),
        "revision": release.get("version"),
        "status": info.get("status"),
        "description": info.get("description"),
        "notes": info.get("notes"),
    }.items() if v is not None}


if __name__ == "__main__":
    try:
        sys.exit(main())
    except helm.HelmError as e:
        print(f"helm: {e}", file=sys.stderr)
        sys.exit(1)
