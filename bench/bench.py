"""Sconce serving benchmark: sconce-server vs the Python servers a user would pick instead.

Run through bench/run.sh, which prepares the venvs, wrk and the sconce-server binary. Every server
runs alone, on 127.0.0.1 on a free port, with the same MLP weights; each one's answers are checked
against a numpy reference before and during the load; wrk drives it at each concurrency; server CPU
comes from /proc (utime+stime of the whole process tree, reaped children included).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from make_model import make_inputs, make_model  # noqa: E402
from mlp_numpy import SequentialMLP  # noqa: E402

MODEL_NAME = "mlp"
EMBED_MODEL_NAME = "minilm"
TOLERANCE = 1e-5
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# Set on some machines for old OpenBLAS builds; they slow a current numpy, so the servers run without.
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def log(msg: str = "") -> None:
    print(msg, flush=True)


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def server_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(BENCH_DIR)
    env["BENCH_DIR"] = str(BENCH_DIR)
    if extra:
        env.update(extra)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- /proc accounting


def _proc_table() -> dict[int, tuple[int, int, int, int]]:
    """pid -> (ppid, utime+cutime ticks, stime+cstime ticks, rss pages)."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2 :].split()
        table[int(d)] = (int(rest[1]), int(rest[11]) + int(rest[13]), int(rest[12]) + int(rest[14]), int(rest[21]))
    return table


def _tree(root: int, table: dict) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out.append(pid)
            todo.extend(children.get(pid, []))
    return out


def tree_cpu(root: int) -> tuple[float, float]:
    """(user+system, system) CPU seconds of the process tree under root."""
    t = _proc_table()
    pids = _tree(root, t)
    user, system = sum(t[p][1] for p in pids), sum(t[p][2] for p in pids)
    return (user + system) / CLK_TCK, system / CLK_TCK


def tree_cpu_s(root: int) -> float:
    return tree_cpu(root)[0]


def tree_rss_mb(root: int) -> tuple[float, int]:
    t = _proc_table()
    pids = _tree(root, t)
    return sum(t[p][3] for p in pids) * PAGE / 2**20, len(pids)


# ---------------------------------------------------------------- HTTP + checks


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict | None = None, timeout: float = 30.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def check_output(body: bytes, header_len: int | None, ref: np.ndarray) -> str | None:
    """None if the V2 response carries `output` equal to ref within TOLERANCE, else why not."""
    try:
        if header_len:
            head = json.loads(body[:header_len])
            raw = body[header_len:]
        else:
            head, raw = json.loads(body), b""
        outputs = head["outputs"]
        offset = 0
        got = None
        for o in outputs:
            size = (o.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                data = np.frombuffer(raw[offset : offset + size], dtype="<f4")
                offset += size
            else:
                data = np.asarray(o["data"], dtype=np.float64).ravel()
            if o["name"] == "output" or len(outputs) == 1:
                got = data
        if got is None:
            return f"no output named 'output' in {[o.get('name') for o in outputs]}"
    except Exception as e:  # noqa: BLE001 - anything malformed is a failed check
        return f"unparseable response ({type(e).__name__}: {e}): {body[:200]!r}"
    want = ref.ravel()
    if got.size != want.size:
        return f"output has {got.size} values, want {want.size}"
    err = float(np.max(np.abs(got - want)))
    if err > TOLERANCE:
        return f"max |diff| {err:.3g} > {TOLERANCE}"
    return None


def check_embeddings(body: bytes, ref: np.ndarray) -> tuple[str | None, float]:
    try:
        doc = json.loads(body)
        data = sorted(doc["data"], key=lambda d: d.get("index", 0))
        got = np.asarray([d["embedding"] for d in data], dtype=np.float64)
    except Exception as e:  # noqa: BLE001
        return f"unparseable response ({type(e).__name__}: {e}): {body[:200]!r}", 0.0
    if got.shape != ref.shape:
        return f"embeddings shape {got.shape}, want {ref.shape}", 0.0
    cos = np.sum(got * ref, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    worst = float(cos.min())
    return (None if worst >= 0.9999 else f"min cosine {worst:.6f} < 0.9999"), worst


# ---------------------------------------------------------------- servers


@dataclass
class Server:
    key: str  # short id used in tables
    label: str
    argv: list[str]
    port: int
    workdir: Path
    env: dict = field(default_factory=server_env)
    ready_path: str = "/v2/health/ready"
    proc: subprocess.Popen | None = None
    ready_s: float = float("nan")
    log_path: Path | None = None

    def start(self, timeout: float = 180.0) -> None:
        self.log_path = self.workdir / f"{self.key}.log"
        logf = open(self.log_path, "ab")  # appended across rounds
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.STDOUT, cwd=self.workdir,
                                     env=self.env, start_new_session=True)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}; log tail:\n{self.log_tail()}")
            try:
                status, _, _ = http_request(self.port, "GET", self.ready_path, timeout=2)
                if status == 200:
                    self.ready_s = time.monotonic() - t0
                    return
            except OSError:
                pass
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{self.label} not ready after {timeout:.0f}s; log tail:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # start_new_session: the server leads its own process group
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        # Stray workers of the group (e.g. MLServer's pool) that outlived the leader.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def log_tail(self, n: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


# ---------------------------------------------------------------- wrk


@dataclass
class Payload:
    key: str  # "json" or "binary"
    path: str
    body_file: Path
    content_type: str = "application/json"
    ihcl: int | None = None


def run_wrk(server: Server, payload: Payload, conc: int, seconds: float, sample_dir: Path | None,
            threads: int) -> dict:
    out = server.workdir / "wrk-out.json"
    if out.exists():
        out.unlink()
    env = dict(os.environ)
    env.update(BENCH_BODY_FILE=str(payload.body_file), BENCH_CONTENT_TYPE=payload.content_type,
               BENCH_OUT=str(out), BENCH_IHCL=str(payload.ihcl or ""),
               BENCH_SAMPLE_DIR=str(sample_dir or ""))
    argv = ["wrk", "-t", str(min(threads, conc)), "-c", str(conc), "-d", f"{seconds:g}s", "--timeout", "10s",
            "-s", str(BENCH_DIR / "wrk_post.lua"), f"http://127.0.0.1:{server.port}{payload.path}"]
    cpu0, sys0 = tree_cpu(server.proc.pid)
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
    cpu1, sys1 = tree_cpu(server.proc.pid)
    if p.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({p.returncode}): {p.stdout[-500:]} {p.stderr[-500:]}")
    r = json.loads(out.read_text())
    r["cpu_s"] = cpu1 - cpu0
    r["sys_pct"] = 100 * (sys1 - sys0) / r["cpu_s"] if r["cpu_s"] > 0 else float("nan")
    n = max(r["requests"], 1)
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["cpu_ms_per_req"] = r["cpu_s"] * 1e3 / n
    r["socket_errors"] = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"]
    return r


def verify_samples(sample_dir: Path, ref: np.ndarray) -> tuple[int, list[str]]:
    n, bad = 0, []
    for f in sorted(sample_dir.glob("*.body")):
        h = f.stem.rsplit("_", 1)[1]
        err = check_output(f.read_bytes(), int(h) if h else None, ref)
        n += 1
        if err:
            bad.append(f"{f.name}: {err}")
        f.unlink()
    return n, bad


@dataclass
class Row:
    server: str
    label: str
    payload: str
    conc: int
    rps: float = float("nan")
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    cpu_ms: float = float("nan")
    sys_pct: float = float("nan")
    rss_mb: float = float("nan")
    procs: int = 0
    ready_s: float = float("nan")
    requests: int = 0
    errors: int = 0
    samples_ok: int = 0
    runs: list = field(default_factory=list)
    rss_runs: list = field(default_factory=list)
    ready_runs: list = field(default_factory=list)
    bad_samples: list = field(default_factory=list)
    problem: str = ""


def median(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def load_server(server: Server, payloads: list[Payload], concs: list[int], seconds: float, threads: int,
                ref: np.ndarray, rows: dict) -> None:
    """One round on a started server: check each payload's first answer, then per concurrency a 1 s
    unmeasured warm-up and one measured wrk run of `seconds`, appended to rows[(key, payload, conc)]."""
    sample_dir = server.workdir / "samples"
    sample_dir.mkdir(exist_ok=True)
    for payload in payloads:
        hdrs = {"Content-Type": payload.content_type}
        if payload.ihcl:
            hdrs["Inference-Header-Content-Length"] = str(payload.ihcl)
        status, rh, body = http_request(server.port, "POST", payload.path, payload.body_file.read_bytes(), hdrs)
        hl = rh.get("inference-header-content-length")
        err = f"HTTP {status}: {body[:200]!r}" if status != 200 else check_output(body, int(hl) if hl else None, ref)
        if err:
            log(f"  !! {server.label} [{payload.key}] wrong first answer: {err}")
            for c in concs:
                rows[(server.key, payload.key, c)].problem = f"wrong answer: {err}"
            continue
        parts = []
        for conc in concs:
            row = rows[(server.key, payload.key, conc)]
            run_wrk(server, payload, conc, 1, None, threads)  # warm-up, not measured
            r = run_wrk(server, payload, conc, seconds, sample_dir, threads)
            n, bad = verify_samples(sample_dir, ref)
            row.samples_ok += n - len(bad)
            row.bad_samples += bad
            row.errors += r["bad_status"] + r["socket_errors"]
            row.requests += r["requests"]
            row.runs.append(r)
            row.rss_runs.append(tree_rss_mb(server.proc.pid))
            if r["bad_status"]:
                log(f"  !! {server.label} [{payload.key}] c={conc}: {r['bad_status']} non-200, first: {r['first_bad']}")
            parts.append(f"c={conc} {r['rps']:,.0f} req/s {r['cpu_ms_per_req']:.3f} CPU-ms/req"
                         + (f" !! {len(bad)} wrong bodies" if bad else ""))
        log(f"  {server.label} [{payload.key}] answer ok; " + "; ".join(parts))


def finish_row(row: "Row") -> None:
    row.rps = median(r["rps"] for r in row.runs)
    row.p50_ms = median(r["lat_p50_us"] / 1e3 for r in row.runs)
    row.p99_ms = median(r["lat_p99_us"] / 1e3 for r in row.runs)
    row.cpu_ms = median(r["cpu_ms_per_req"] for r in row.runs)
    row.sys_pct = median(r["sys_pct"] for r in row.runs)
    if row.rss_runs:
        row.rss_mb = median(m for m, _ in row.rss_runs)
        row.procs = max(n for _, n in row.rss_runs)
    row.ready_s = median(row.ready_runs)
    if row.problem:
        return
    if row.bad_samples:
        row.problem = f"{len(row.bad_samples)} sampled bodies wrong, e.g. {row.bad_samples[0]}"
    elif row.errors:
        row.problem = f"{row.errors} failed requests"
    elif not row.runs:
        row.problem = "not measured"


# ---------------------------------------------------------------- report helpers


def numpy_kernel(python: str, env: dict | None = None) -> str:
    code = ("import json, numpy, threadpoolctl;"
            "print(json.dumps([numpy.__version__, threadpoolctl.threadpool_info()]))")
    try:
        out = subprocess.run([python, "-c", code], env=env or server_env(), capture_output=True, text=True,
                             timeout=120)
        ver, info = json.loads(out.stdout)
        libs = ", ".join(f"{i.get('internal_api')} {i.get('version')} kernel={i.get('architecture')} "
                         f"threads={i.get('num_threads')}" for i in info) or "no BLAS found"
        return f"numpy {ver}: {libs}"
    except Exception as e:  # noqa: BLE001
        return f"(threadpoolctl failed: {e})"


def pkg_versions(python: str, names: list[str]) -> str:
    code = ("import importlib.metadata as m, sys\n"
            "for n in sys.argv[1:]:\n"
            "    try: print(f'{n} {m.version(n)}')\n"
            "    except Exception: print(f'{n} -')\n")
    out = subprocess.run([python, "-c", code, *names], capture_output=True, text=True, timeout=60)
    return ", ".join(out.stdout.split("\n")[:-1])


def fmt(x: float, spec: str) -> str:
    return "-" if x != x else format(x, spec)


def verdict(ratio: float, target: float) -> str:
    if ratio != ratio:
        return "n/a"
    return "PASS" if ratio >= target else "MISS"


def sentences(n: int = 32, seed: int = 7) -> list[str]:
    words = ("the a model server request batch latency tensor cluster node pod deployment rollout canary "
             "traffic metric scale replica kubernetes operator inference embedding sentence vector token "
             "query answer fast slow small large blue green river mountain city morning evening weather "
             "people read write build ship test measure compare improve because while after before during "
             "quickly carefully often never always every new old first last simple clear").split()
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randint(8, 24)
        s = " ".join(rng.choice(words) for _ in range(k))
        out.append(f"{s[0].upper()}{s[1:]} number {i}.")
    return out


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--venv", required=True, help="venv with kserve, fastapi, sentence-transformers")
    ap.add_argument("--mlserver-venv", required=True)
    ap.add_argument("--sconce-bin", default="", help="target/release/sconce-server; empty skips sconce")
    ap.add_argument("--sconce-rev", default="", help="which source the binary was built from")
    ap.add_argument("--floor-bin", default="", help="server/examples/http_floor; empty skips the floor")
    ap.add_argument("--embed-model-dir", default="", help="all-MiniLM-L6-v2 dir; empty skips embeddings")
    ap.add_argument("--workdir", required=True)
    args = ap.parse_args()

    seconds = env_float("BENCH_SECONDS", 8)
    repeats = env_int("BENCH_REPEATS", 3)
    rows_per_req = env_int("BENCH_ROWS", 1)
    concs = [int(c) for c in (os.environ.get("BENCH_CONCURRENCY") or "1,32").split(",")]
    wrk_threads = env_int("BENCH_WRK_THREADS", 1)
    only = set(filter(None, (os.environ.get("BENCH_ONLY") or "").split(",")))
    want = lambda k: not only or k in only  # noqa: E731

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    py = str(Path(args.venv) / "bin" / "python")
    mlpy = Path(args.mlserver_venv) / "bin"

    # ---- header: machine, versions, environment caveat
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    log("=" * 100)
    log(f"Sconce serving benchmark  {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    log(f"machine: nproc={os.cpu_count()} ({cpu_model}), {platform.system()} {platform.release()}, "
        f"load avg {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (shared, noisy)")
    log(f"settings: BENCH_SECONDS={seconds:g} x BENCH_REPEATS={repeats} (medians), concurrency {concs}, "
        f"wrk threads {wrk_threads}, rows per request {rows_per_req}")
    was = {k: os.environ[k] for k in OPENBLAS_VARS if k in os.environ}
    log(f"env: {' '.join(f'{k}={v}' for k, v in was.items()) or 'OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE not set'}"
        f"{' -> unset for every server process' if was else ''}")
    if was:
        log(f"  (with them set, numpy would use: {numpy_kernel(py, dict(os.environ))})")
    log(f"peers venv: {numpy_kernel(py)}")
    log(f"  {pkg_versions(py, ['kserve', 'fastapi', 'uvicorn', 'orjson', 'torch', 'sentence-transformers'])}")
    log(f"mlserver venv: {numpy_kernel(str(mlpy / 'python'))}")
    log(f"  {pkg_versions(str(mlpy / 'python'), ['mlserver', 'uvloop', 'fastapi'])}")
    wrk_ver = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    log(f"client: {wrk_ver.strip()}")
    log(f"sconce-server: {args.sconce_bin or 'not available'}" + (f" ({args.sconce_rev})" if args.sconce_rev else ""))
    log("=" * 100)

    # ---- model, inputs, reference, request bodies
    model_dir = make_model(work / "mlp-model")
    x = make_inputs(rows_per_req)
    ref = SequentialMLP.load(model_dir).forward(x)
    path = f"/v2/models/{MODEL_NAME}/infer"
    data = "[" + ",".join(str(v) for v in x.ravel()) + "]"
    json_body = (f'{{"id":"bench","inputs":[{{"name":"input","shape":[{rows_per_req},1000],'
                 f'"datatype":"FP32","data":{data}}}]}}').encode()
    assert np.array_equal(np.asarray(json.loads(json_body)["inputs"][0]["data"], dtype=np.float32), x.ravel())
    (work / "v2.json").write_bytes(json_body)
    raw = x.astype("<f4").tobytes()
    head = json.dumps({"id": "bench", "inputs": [{"name": "input", "shape": [rows_per_req, 1000],
                       "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}],
                       "outputs": [{"name": "output", "parameters": {"binary_data": True}}]},
                      separators=(",", ":")).encode()
    (work / "v2.bin").write_bytes(head + raw)
    # The floor answers with the reference itself, in sconce-server's V2 response layout.
    out = {"name": "output", "datatype": "FP32", "shape": list(ref.shape)}
    resp = {"model_name": MODEL_NAME, "model_version": "1", "id": "bench"}
    (work / "floor.json").write_text(json.dumps({**resp, "outputs": [{**out, "data": [float(v) for v in ref.astype(np.float32).ravel()]}]}))
    out_raw = ref.astype("<f4").tobytes()
    floor_head = json.dumps({**resp, "outputs": [{**out, "parameters": {"binary_data_size": len(out_raw)}}]},
                            separators=(",", ":")).encode()
    (work / "floor.bin").write_bytes(floor_head + out_raw)
    p_json = Payload("json", path, work / "v2.json")
    p_bin = Payload("binary", path, work / "v2.bin", "application/octet-stream", len(head))
    log(f"model: {model_dir} (1000 -> 64 relu -> 64 relu -> 10 softmax, seed 1234); "
        f"request: [{rows_per_req},1000] FP32, JSON {len(json_body)} B, binary {len(head) + len(raw)} B")

    # ---- servers, one at a time
    def mk(key, label, argv_fn):
        port = free_port()
        wd = work / key
        wd.mkdir(exist_ok=True)  # reused across rounds; logs are overwritten
        return Server(key, label, argv_fn(port, wd), port, wd)

    def mlserver_argv(port, wd):
        shutil.copy(BENCH_DIR / "peers" / "mlserver_runtime.py", wd / "mlserver_runtime.py")
        (wd / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port()}))
        (wd / "model-settings.json").write_text(json.dumps({
            "name": MODEL_NAME, "implementation": "mlserver_runtime.MLPRuntime",
            "parameters": {"uri": str(model_dir)}}))
        return [str(mlpy / "mlserver"), "start", str(wd)]

    plan = []  # (key, label, argv(port, workdir), payloads)
    if want("fastapi"):
        plan.append(("fastapi", "FastAPI+orjson", lambda port, wd: [
            py, str(BENCH_DIR / "peers" / "fastapi_server.py"), "--model-dir", str(model_dir),
            "--model-name", MODEL_NAME, "--host", "127.0.0.1", "--port", str(port)], [p_json]))
    if want("kserve"):
        plan.append(("kserve", "KServe", lambda port, wd: [
            py, str(BENCH_DIR / "peers" / "kserve_server.py"), "--model-dir", str(model_dir),
            "--model-name", MODEL_NAME, "--host", "127.0.0.1", "--port", str(port)], [p_json]))
    if want("mlserver"):
        plan.append(("mlserver", "MLServer", mlserver_argv, [p_json]))
    if want("sconce") and args.sconce_bin:
        plan.append(("sconce", "sconce-server", lambda port, wd: [
            args.sconce_bin, "--model-dir", str(model_dir), "--format", "sequential",
            "--model-name", MODEL_NAME, "--host", "127.0.0.1", "--port", str(port)], [p_json, p_bin]))

    if want("floor") and args.floor_bin:
        plan.append(("floor", "HTTP floor", lambda port, wd: [
            args.floor_bin, "--host", "127.0.0.1", "--port", str(port), "--json-response", str(work / "floor.json"),
            "--binary-response", str(work / "floor.bin"), "--binary-header-len", str(len(floor_head))],
            [p_json, p_bin]))

    # Rounds: every server in turn, started afresh each round, one measured run per concurrency; the
    # report takes medians over rounds, so background load on this shared machine hits all servers alike.
    rows_by_key = {(key, p.key, c): Row(key, label, p.key, c)
                   for key, label, _, payloads in plan for p in payloads for c in concs}
    failed: set[str] = set()
    for rnd in range(repeats):
        log(f"\n--- round {rnd + 1}/{repeats}")
        for key, label, argv_fn, payloads in plan:
            if key in failed:
                continue
            server = mk(key, label, argv_fn)
            try:
                server.start()
                rss0, nproc0 = tree_rss_mb(server.proc.pid)
                log(f"  {label}: ready in {server.ready_s:.2f} s (port {server.port}), idle RSS {rss0:.0f} MB "
                    f"in {nproc0} process(es)")
                for p in payloads:
                    for c in concs:
                        rows_by_key[(key, p.key, c)].ready_runs.append(server.ready_s)
                load_server(server, payloads, concs, seconds, wrk_threads, ref, rows_by_key)
            except Exception as e:  # noqa: BLE001 - report and go on with the other servers
                log(f"  !! {label} failed: {e}\n  (log: {server.log_path})")
                failed.add(key)
                for p in payloads:
                    for c in concs:
                        rows_by_key[(key, p.key, c)].problem = str(e).split("\n")[0]
            finally:
                server.stop()
    rows = list(rows_by_key.values())
    for r in rows:
        finish_row(r)

    # ---- embeddings
    embed = {}
    if want("embed") and args.embed_model_dir:
        embed = bench_embeddings(args, py, work, seconds, repeats)

    # ---- report
    log("\n" + "=" * 100)
    if rows:
        report_mlp(rows, concs, repeats, seconds)
    if embed:
        log("\nEmbeddings, all-MiniLM-L6-v2, batch 32 (sentences/s, median):")
        st, sc = embed.get("st", {}), embed.get("sconce", {})
        log(f"  sentence-transformers encode(batch_size=32), in-process, torch {st.get('torch', '?')} "
            f"{st.get('torch_cpu', '?')} threads={st.get('torch_threads', '?')}: {fmt(st.get('sent_per_s', float('nan')), ',.1f')} sent/s, "
            f"{fmt(st.get('cpu_ms_per_sent', float('nan')), '.2f')} CPU-ms/sentence, "
            f"max RSS {fmt(st.get('max_rss_mb', float('nan')), '.0f')} MB, load {fmt(st.get('load_s', float('nan')), '.1f')} s"
            + (f"  !! {st['problem']}" if st.get("problem") else ""))
        log(f"  sconce-server POST /v1/embeddings (32 strings, conc 1): "
            f"{fmt(sc.get('sent_per_s', float('nan')), ',.1f')} sent/s, "
            f"{fmt(sc.get('cpu_ms_per_sent', float('nan')), '.2f')} CPU-ms/sentence, "
            f"RSS {fmt(sc.get('rss_mb', float('nan')), '.0f')} MB, ready {fmt(sc.get('ready_s', float('nan')), '.2f')} s, "
            f"min cosine vs ST {fmt(sc.get('min_cos', float('nan')), '.6f')}"
            + (f"  !! {sc['problem']}" if sc.get("problem") else ""))
        ok = not sc.get("problem") and not st.get("problem")
        ratio = sc.get("sent_per_s", float("nan")) / st.get("sent_per_s", float("nan")) if ok else float("nan")
        log(f"  {'sconce / sentence-transformers throughput':<44}{fmt(ratio, '.2f') + ('x' if ratio == ratio else ''):>14}{'>=1x':>8}  "
            f"{verdict(ratio, 1.0)}")

    log(f"\nload avg at end {os.getloadavg()[0]:.2f}; total bench time {time.monotonic() - t_start:.0f} s; "
        f"logs and raw results in {work}")
    (work / "results.json").write_text(json.dumps(
        {"rows": [r.__dict__ for r in rows], "embeddings": embed}, indent=1, default=str))
    return 0


def report_mlp(rows: list, concs: list[int], repeats: int, seconds: float) -> None:
    log("MLP 1000-64-64-10, KServe V2 REST on 127.0.0.1 (medians of rounds: "
        f"{repeats} x {seconds:g} s; CPU = server process tree utime+stime from /proc)")
    hdr = f"{'server':<16}{'payload':<8}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}" \
          f"{'CPU ms/req':>12}{'sys%':>6}{'RSS MB':>8}{'procs':>6}{'ready s':>9}  check"
    log(hdr)
    log("-" * len(hdr))
    for r in rows:
        check = r.problem or f"ok ({r.samples_ok} bodies)"
        log(f"{r.label:<16}{r.payload:<8}{r.conc:>5}{fmt(r.rps, ',.0f'):>10}{fmt(r.p50_ms, '.2f'):>9}"
            f"{fmt(r.p99_ms, '.2f'):>9}{fmt(r.cpu_ms, '.3f'):>12}{fmt(r.sys_pct, '.0f'):>6}{fmt(r.rss_mb, '.0f'):>8}{r.procs:>6}"
            f"{fmt(r.ready_s, '.2f'):>9}  {check}")

    def cpu(key, payload, conc):
        for r in rows:
            if r.server == key and r.payload == payload and r.conc == conc and not r.problem:
                return r.cpu_ms
        return float("nan")

    if any(r.server == "floor" for r in rows):
        log("HTTP floor = server/examples/http_floor: sconce-server's HTTP stack answering a precomputed body, with no\n"
            "  parsing and no model: what HTTP alone costs here. peer / floor bounds every peer / sconce ratio below.")

    log("\nCPU per request, peer / sconce-server (higher = sconce cheaper):")
    log(f"{'comparison':<44}{'conc':>5}{'ratio':>9}{'target':>8}  verdict")
    for conc in concs:
        for name, peer, sp, target in [
            ("FastAPI(JSON) / sconce(JSON)", "fastapi", "json", 3.0),
            ("KServe(JSON) / sconce(JSON)", "kserve", "json", 10.0),
            ("FastAPI(JSON) / sconce(binary ext.)", "fastapi", "binary", 10.0),
            ("MLServer(JSON) / sconce(JSON)  [info]", "mlserver", "json", None),
        ]:
            ratio = cpu(peer, "json", conc) / cpu("sconce", sp, conc)
            v = verdict(ratio, target) if target else "-"
            tgt = f">={target:g}x" if target else "-"
            log(f"{name:<44}{conc:>5}{fmt(ratio, '.2f') + ('x' if ratio == ratio else ''):>9}{tgt:>8}  {v}")
        for name, peer, fp, target in [
            ("  bound: FastAPI(JSON) / floor(JSON body)", "fastapi", "json", 3.0),
            ("  bound: KServe(JSON) / floor(JSON body)", "kserve", "json", 10.0),
            ("  bound: FastAPI(JSON) / floor(binary body)", "fastapi", "binary", 10.0),
        ]:
            ratio = cpu(peer, "json", conc) / cpu("floor", fp, conc)
            if ratio == ratio:
                reach = "reachable" if ratio >= target else "UNREACHABLE over HTTP here"
                log(f"{name:<44}{conc:>5}{fmt(ratio, '.2f') + 'x':>9}{f'>={target:g}x':>8}  {reach}")


def embed_client(server: Server, body: bytes, seconds: float, ref: np.ndarray) -> dict:
    """Sequential POST /v1/embeddings on one keep-alive connection for about `seconds`."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    n, problem = 0, ""
    cpu0, t0 = tree_cpu_s(server.proc.pid), time.monotonic()
    try:
        while time.monotonic() - t0 < seconds:
            conn.request("POST", "/v1/embeddings", body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            rbody = r.read()
            err = f"HTTP {r.status}: {rbody[:200]!r}" if r.status != 200 else check_embeddings(rbody, ref)[0]
            if err and not problem:
                problem = f"wrong answer: {err}"
            n += 1
    finally:
        wall, cpu1 = time.monotonic() - t0, tree_cpu_s(server.proc.pid)
        conn.close()
    return {"requests": n, "wall_s": wall, "cpu_s": cpu1 - cpu0, "problem": problem}


def bench_embeddings(args, py: str, work: Path, seconds: float, repeats: int) -> dict:
    """sentence-transformers in-process vs sconce-server /v1/embeddings, runs interleaved ST, sconce, ..."""
    res: dict = {"st": {}, "sconce": {}}
    st, sc = res["st"], res["sconce"]
    sents = sentences()
    sfile = work / "sentences.json"
    sfile.write_text(json.dumps(sents))
    ref_file = work / "st-embeddings.npy"
    log(f"\n--- sentence-transformers in-process ({len(sents)} sentences per batch) vs sconce-server "
        f"--format bert, runs interleaved")
    worker = subprocess.Popen(
        [py, str(BENCH_DIR / "embed_st.py"), "--model-dir", args.embed_model_dir, "--sentences", str(sfile),
         "--ref-out", str(ref_file)],
        env=server_env({"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(work / "st.log", "wb"), text=True)

    def st_call(cmd: str | None) -> dict:
        if cmd:
            worker.stdin.write(cmd + "\n")
            worker.stdin.flush()
        line = worker.stdout.readline()
        if not line:
            raise RuntimeError(f"sentence-transformers worker died; log tail: "
                               f"{(work / 'st.log').read_text(errors='replace')[-800:]}")
        return json.loads(line)

    server = None
    body = json.dumps({"model": EMBED_MODEL_NAME, "input": sents}).encode()
    try:
        try:
            st.update(st_call(None))
            st["runs"] = []
            ref = np.load(ref_file).astype(np.float64)
            log(f"  sentence-transformers loaded in {st['load_s']:.1f} s (torch {st['torch']}, "
                f"{st['torch_cpu']}, {st['torch_threads']} threads)")
        except Exception as e:  # noqa: BLE001
            st["problem"] = str(e).split("\n")[0]
            log(f"  !! sentence-transformers failed: {e}")
            return res

        if not args.sconce_bin:
            sc["problem"] = "sconce-server not available"
        else:
            port = free_port()
            wd = work / "sconce-bert"
            wd.mkdir(exist_ok=True)
            server = Server("sconce-bert", "sconce-server (bert)", [
                args.sconce_bin, "--model-dir", args.embed_model_dir, "--format", "bert", "--model-name",
                EMBED_MODEL_NAME, "--host", "127.0.0.1", "--port", str(port)], port, wd)
            try:
                server.start()
                sc["ready_s"] = server.ready_s
                status, _, rbody = http_request(port, "POST", "/v1/embeddings", body,
                                                {"Content-Type": "application/json"})
                err, sc["min_cos"] = (f"HTTP {status}: {rbody[:200]!r}", float("nan")) if status != 200 \
                    else check_embeddings(rbody, ref)
                if err:
                    raise RuntimeError(f"wrong answer: {err}")
                log(f"  sconce-server ready in {server.ready_s:.2f} s; first answer matches "
                    f"sentence-transformers (min cosine {sc['min_cos']:.6f})")
                embed_client(server, body, 1.0, ref)  # warm-up
                sc["runs"] = []
            except Exception as e:  # noqa: BLE001
                sc["problem"] = str(e).split("\n")[0]
                log(f"  !! sconce-server (bert) failed: {e}")
                server.stop()
                server = None

        for i in range(repeats):
            r = st_call(f"run {seconds:g}")
            st["runs"].append(r)
            line = f"  run {i + 1}: sentence-transformers {r['sent_per_s']:.1f} sent/s"
            if server is not None:
                # A batch of 32 takes tens to hundreds of ms, so wrk's fixed window would cut off a large
                # share of a run; a keep-alive client loop times whole requests and checks every answer.
                c = embed_client(server, body, seconds, ref)
                sc["runs"].append(c)
                if c["problem"] and not sc.get("problem"):
                    sc["problem"] = c["problem"]
                line += f", sconce-server {c['requests'] * len(sents) / c['wall_s']:.1f} sent/s"
            log(line)

        st["sent_per_s"] = median(r["sent_per_s"] for r in st["runs"])
        st["cpu_ms_per_sent"] = median(r["cpu_ms_per_sent"] for r in st["runs"])
        st["max_rss_mb"] = st["runs"][-1]["max_rss_mb"] if st["runs"] else float("nan")
        if server is not None:
            runs = sc["runs"]
            sc["sent_per_s"] = median(r["requests"] * len(sents) / r["wall_s"] for r in runs)
            sc["cpu_ms_per_sent"] = median(r["cpu_s"] * 1e3 / max(r["requests"] * len(sents), 1) for r in runs)
            sc["checked"] = sum(r["requests"] for r in runs)
            sc["rss_mb"], _ = tree_rss_mb(server.proc.pid)
    finally:
        if server is not None:
            server.stop()
        try:
            worker.stdin.close()
            worker.wait(timeout=30)
        except Exception:  # noqa: BLE001
            worker.kill()
    return res

if __name__ == "__main__":
    sys.exit(main())
