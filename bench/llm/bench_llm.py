"""sconce-server vs llama.cpp's llama-server on one GGUF: single-stream decode tokens/s, time to
first token (p50) for a ~200-token prompt, aggregate tokens/s over 8 concurrent streams, RSS and
CPU.

Both get the same requests on /v1/completions (raw prompts, so no chat template differs),
streamed, greedy; one server runs at a time; each phase alternates nothing but is repeated
(medians). Run by bench/llm/run.sh.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import threading
import time

STORY = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, counting the steps "
    "as his father had taught him, and lit the great lamp that guided the fishing boats home. "
)
LONG = (
    "Sconce serves machine learning models on Kubernetes. An operator watches ModelDeployment "
    "resources and runs the inference server for each version, with probes, rolling updates and "
    "metrics for autoscaling and canary analysis. The server loads models from local directories, "
    "volumes or object stores, checks their checksums, batches requests on a dedicated model "
    "thread and answers over HTTP with the KServe, TF-Serving and OpenAI protocols. "
)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status
    except OSError:
        return None
    finally:
        c.close()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stream(port, prompt, max_tokens):
    """One streamed completion: (send time, arrival time of each text chunk)."""
    body = json.dumps(
        {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    )
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]!r}")
    times = []
    for raw in r:
        line = raw.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        ev = json.loads(line[6:])
        choices = ev.get("choices") or []
        if choices and choices[0].get("text"):
            times.append(time.perf_counter())
    c.close()
    return t0, times


class Server:
    def __init__(self, name, cmd, port, ready_path, log):
        self.name, self.port = name, port
        self.log = open(log, "w")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        while get(port, ready_path) != 200:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited; see {log}")
            if time.perf_counter() - self.t0 > 300:
                raise RuntimeError(f"{name} not ready after 300 s")
            time.sleep(0.05)
        self.ready_s = time.perf_counter() - self.t0

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def measure(server, repeats):
    port, pid = server.port, server.proc.pid
    stream(port, "Warm up: " + STORY, 8)
    res = {"ready_s": server.ready_s}
    # Single stream decode rate: tokens after the first over the time they took.
    rates = []
    for i in range(repeats):
        _, times = stream(port, f"Story {i}. " + STORY, 128)
        rates.append((len(times) - 1) / (times[-1] - times[0]))
    res["decode_tok_s"] = statistics.median(rates)
    # Time to first token, ~200-token prompt; a different first word each time so no server can
    # reuse a cached prefix.
    ttfts = []
    words = ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India", "Juliet"]
    for i in range(2 * repeats + 4):
        t0, times = stream(port, f"{words[i % 10]} {i}. " + LONG * 2, 1)
        ttfts.append(times[0] - t0)
    res["ttft_p50_ms"] = statistics.median(ttfts) * 1000
    # 8 concurrent streams.
    aggs = []
    cpu0 = cpu_seconds(pid)
    tokens_total = 0
    for r in range(repeats):
        counts = [0] * 8
        def run(k):
            _, times = stream(port, f"Stream {k} round {r}. " + STORY, 64)
            counts[k] = len(times)
        threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        aggs.append(sum(counts) / (time.perf_counter() - t0))
        tokens_total += sum(counts)
    res["agg8_tok_s"] = statistics.median(aggs)
    res["cpu_ms_per_token_8"] = (cpu_seconds(pid) - cpu0) * 1000 / max(tokens_total, 1)
    res["rss_mb"] = rss_mb(pid)
    return res


def llama_setup(log):
    """What llama-server reports choosing: its thread pool and its slots."""
    found = []
    with open(log, errors="replace") as f:
        for line in f:
            for key in ("n_threads = ", "n_slots = "):
                if key in line:
                    found.append(key + line.split(key, 1)[1].strip())
    return "; ".join(found) or "thread and slot counts not found in its log"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sconce", required=True)
    ap.add_argument("--llama-server", required=True)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", "3")))
    a = ap.parse_args()
    gguf = [f for f in os.listdir(a.model_dir) if f.endswith(".gguf")][0]
    model = os.path.join(a.model_dir, gguf)
    llama_threads = os.environ.get("BENCH_LLAMA_THREADS")
    llama_slots = os.environ.get("BENCH_LLAMA_SLOTS", "8")
    print(f"machine: nproc {os.cpu_count()}, load {os.getloadavg()}; model {gguf}; repeats {a.repeats}", flush=True)
    results = {}

    def run(name, cmd, port, ready_path, log):
        s = Server(name, cmd, port, ready_path, os.path.join(a.out, log))
        try:
            results[name] = measure(s, a.repeats)
        finally:
            s.stop()
        print(name, results[name], flush=True)

    port = free_port()
    run("sconce-server", [a.sconce, "--format", "gguf", "--model-dir", a.model_dir, "--model-name", "smol",
                          "--host", "127.0.0.1", "--port", str(port)], port, "/v2/health/ready", "sconce.log")
    port = free_port()
    # One slot per stream (-np 8): llama-server decodes all slots together in one batch per step.
    cmd = [a.llama_server, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-np", llama_slots]
    if llama_threads:
        cmd += ["-t", llama_threads]
    run("llama.cpp", cmd, port, "/health", "llama.log")
    setup = llama_setup(os.path.join(a.out, "llama.log"))
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)

    sc, ll = results["sconce-server"], results["llama.cpp"]
    lines = [
        f"server          decode tok/s  TTFT p50 ms (200-tok prompt)  8-stream tok/s  CPU ms/tok (8)  RSS MB  ready s",
    ]
    for name, r in results.items():
        lines.append(
            f"{name:<15} {r['decode_tok_s']:>12.1f}  {r['ttft_p50_ms']:>28.1f}  {r['agg8_tok_s']:>14.1f}  "
            f"{r['cpu_ms_per_token_8']:>14.2f}  {r['rss_mb']:>6.0f}  {r['ready_s']:>7.2f}"
        )
    verdict = lambda ok: "PASS" if ok else "MISS"
    r1 = sc["decode_tok_s"] / ll["decode_tok_s"]
    r8 = sc["agg8_tok_s"] / ll["agg8_tok_s"]
    rt = sc["ttft_p50_ms"] / ll["ttft_p50_ms"]
    lines += [
        "",
        f"single-stream decode, sconce / llama.cpp   {r1:5.2f}x  target >= 1.0x  {verdict(r1 >= 1.0)}",
        f"8 streams aggregate, sconce / llama.cpp    {r8:5.2f}x  target >= 1.0x  {verdict(r8 >= 1.0)}",
        f"TTFT p50, sconce / llama.cpp               {rt:5.2f}x  target <= 1.0x  {verdict(rt <= 1.0)}",
        f"llama.cpp: llama-server -np {llama_slots}{' -t ' + llama_threads if llama_threads else ''}, "
        f"otherwise its defaults ({setup}); load at end {os.getloadavg()}",
    ]
    report = "\n".join(lines)
    print(report)
    with open(os.path.join(a.out, "report.txt"), "w") as f:
        f.write(report + "\n")
    print(f"logs and results in {a.out}")


if __name__ == "__main__":
    main()
