"""Benchmark of `livedream serve` (not a test: prints numbers, never fails on speed).

    python scripts/bench_server.py [--requests 10] [--concurrent 50] [--threads N] [--passive]
    python scripts/bench_server.py --url http://HOST:PORT --token T     # a server already running

Starts the server in a subprocess (or uses --url), then:
- a 640x480 JPEG dreamed with the page's default settings, one request at a time: median latency
  as the client sees it, and the server's own dream time (target <= 0.5 s on a 2-core CPU,
  issue 14);
- `--concurrent` requests at once: how many got 200, 503 or the per-client bounds' 429 and
  closed connection (every one must get one of those: none lost), the server still healthy
  after, its RSS before and after (memory bounded).
Exit code 1 only when a request was lost or the server broke.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter

import cv2
import httpx

from livedream.server.protocol import MAX_PER_CLIENT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "samples", "fruits.jpg")


def photo_640x480() -> bytes:
    bgr = cv2.resize(cv2.imread(SAMPLE), (640, 480), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def start_server(threads: int | None, passive: bool) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ)
    if passive:  # OpenMP threads sleep instead of spinning while they wait (set before torch loads)
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    extra = ["--threads", str(threads)] if threads else []
    proc = subprocess.Popen([sys.executable, "-m", "livedream", "serve", "--port", "0", *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"http://[^\s/]+", line)
    if m is None:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, m.group(0)


def rss_mb(pid: int | None, client: httpx.Client) -> tuple[float | None, float | None]:
    """(current, peak) resident memory of the server in MB."""
    if pid is None:
        return client.get("/api/stats").json().get("rss_mb"), None
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS"), values.get("VmHWM")


def post(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post("/api/dream", files={"image": ("photo.jpg", body, "image/jpeg")})


def sequential(client: httpx.Client, body: bytes, n: int) -> None:
    post(client, body).raise_for_status()  # warm-up: first-call allocations
    total, server = [], []
    for _ in range(n):
        t = time.perf_counter()
        r = post(client, body)
        total.append(time.perf_counter() - t)
        r.raise_for_status()
        server.append(float(r.headers["x-dream-ms"]) / 1000)
    print(f"640x480 JPEG at the page defaults, {n} requests one at a time:")
    print(f"  client latency  median {statistics.median(total):.3f} s  "
          f"min {min(total):.3f}  max {max(total):.3f}   (target <= 0.5 s)")
    print(f"  server decode+dream+encode median {statistics.median(server):.3f} s")


def burst(url: str, headers: dict[str, str], body: bytes, n: int) -> Counter[str]:
    results: Counter[str] = Counter()
    lock = threading.Lock()
    go = threading.Event()

    def one() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=300) as c:
            go.wait()
            try:
                outcome = str(post(c, body).status_code)
            except httpx.HTTPError as e:
                outcome = f"error:{type(e).__name__}"
        with lock:
            results[outcome] += 1

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    print(f"{n} concurrent requests: {dict(sorted(results.items()))} in {time.perf_counter() - t0:.1f} s")
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10, help="sequential requests to time")
    ap.add_argument("--concurrent", type=int, default=50, help="requests sent at once")
    ap.add_argument("--url", help="bench this running server instead of starting one")
    ap.add_argument("--token", default=os.environ.get("LIVEDREAM_TOKEN"))
    ap.add_argument("--threads", type=int, help="the server's torch threads (serve --threads)")
    ap.add_argument("--passive", action="store_true", help="start the server with OMP_WAIT_POLICY=PASSIVE")
    args = ap.parse_args()

    proc, url = (None, args.url.rstrip("/")) if args.url else start_server(args.threads, args.passive)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    body = photo_640x480()
    print(f"server {url} (threads {args.threads or 'default'}{', OMP passive' if args.passive else ''}), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before (on a shared machine "
          "other work shows up in these numbers)")
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
            sequential(client, body, args.requests)
            pid = proc.pid if proc else None
            before, _ = rss_mb(pid, client)
            results = burst(url, headers, body, args.concurrent)
            time.sleep(0.5)
            healthy = client.get("/healthz").json().get("ok") is True
            after_ok = post(client, body).status_code == 200
            after, peak = rss_mb(pid, client)
            stats = client.get("/api/stats").json()["dream"]
        # From one address (this script), the server's per-client bounds (issue 12) answer the
        # uploads beyond two with 429 and close the connections beyond MAX_PER_CLIENT at once.
        closed = sum(v for k, v in results.items() if k.startswith("error:"))
        over = max(0, args.concurrent + 1 - MAX_PER_CLIENT)  # + 1: the client above holds one
        answered = results["200"] + results["503"] + results["429"] + min(closed, over)
        print(f"  200: {results['200']}  503: {results['503']}  429 (per-client uploads): {results['429']}  "
              f"closed (beyond {MAX_PER_CLIENT} connections per client): {min(closed, over)}  "
              f"lost/other: {args.concurrent - answered}")
        print(f"  server healthy after: {healthy}; "
              f"a dream after the burst: {'200' if after_ok else 'failed'}")
        print(f"  server RSS before {before:.0f} MB, after {after:.0f} MB"
              + (f", peak {peak:.0f} MB" if peak else ""))
        print(f"  worker: {stats}")
        return 0 if answered == args.concurrent and healthy and after_ok else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
