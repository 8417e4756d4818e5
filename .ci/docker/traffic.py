"""HTTP traffic against the proxy's published port, for .ci/docker.sh (standard library only).

traffic.py loop BASE --rate 20 --max-seconds 600 --stop-file F --total N [--out F.json]
    a bounded request loop alternating /api/v1/people (filtered) and /health
    until the stop file exists (or max-seconds pass): counts sent and failed
    requests (a failure: no answer, a status other than 200, or a people total
    other than N), the commits /health reported and when each was first seen.
traffic.py bench BASE --seconds 10 --concurrency 8
    requests per second of the filtered page query.
traffic.py replicas BASE --requests 60
    the X-Served-By values of that many /api/v1/health answers.
traffic.py slow HOST PORT
    a slow-header client, an oversized body and an oversized header: prints
    how the proxy cut each off; exits 1 if any got through.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

PEOPLE = "/api/v1/people?gender=Female&age_min=30&limit=20"


def get(url: str, timeout: float = 15) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (CI URL)
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


class Loop:
    def __init__(self, base: str, total: int) -> None:
        self.base, self.total = base, total
        self.lock = threading.Lock()
        self.sent = self.failed = 0
        self.errors: Counter[str] = Counter()
        self.commits: dict[str, float] = {}
        self.started = time.monotonic()

    def one(self, path: str) -> None:
        problem = None
        try:
            status, _, body = get(self.base + path)
            if status != 200:
                problem = f"HTTP {status} on {path.split('?')[0]}"
            else:
                answer = json.loads(body)
                if path == "/health":
                    with self.lock:
                        self.commits.setdefault(answer.get("commit"), round(time.monotonic() - self.started, 1))
                elif answer.get("total") != self.total:
                    problem = f"people total {answer.get('total')} != {self.total}"
        except Exception as error:  # noqa: BLE001 - every kind of failure is counted
            problem = f"{type(error).__name__}: {error}"[:120]
        with self.lock:
            self.sent += 1
            if problem:
                self.failed += 1
                self.errors[problem] += 1


def loop(args: argparse.Namespace) -> int:
    state = Loop(args.base, args.total)
    interval = 1 / args.rate
    with ThreadPoolExecutor(max_workers=16) as pool:
        i = 0
        while time.monotonic() - state.started < args.max_seconds and not os.path.exists(args.stop_file):
            pool.submit(state.one, PEOPLE if i % 2 == 0 else "/health")
            i += 1
            time.sleep(max(0.0, state.started + i * interval - time.monotonic()))
    elapsed = time.monotonic() - state.started
    result = {
        "sent": state.sent,
        "failed": state.failed,
        "seconds": round(elapsed, 1),
        "rate": round(state.sent / elapsed, 1),
        "commits_first_seen_s": state.commits,
        "errors": dict(state.errors.most_common(5)),
    }
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f)
    return 0


def bench(args: argparse.Namespace) -> int:
    url = args.base + PEOPLE
    count = Counter()
    deadline = time.monotonic() + args.seconds

    def worker() -> None:
        while time.monotonic() < deadline:
            try:
                status, _, _ = get(url)
                count["ok" if status == 200 else "bad"] += 1
            except OSError:
                count["bad"] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    print(json.dumps({"req_per_s": round(count["ok"] / elapsed, 1), "ok": count["ok"], "failed": count["bad"]}))
    return 0 if count["bad"] == 0 else 1


def replicas(args: argparse.Namespace) -> int:
    seen: Counter[str] = Counter()
    for _ in range(args.requests):
        _, headers, _ = get(args.base + "/api/v1/health")
        seen[headers.get("X-Served-By") or headers.get("x-served-by") or "none"] += 1
    print(json.dumps(dict(seen)))
    return 0


def closed_after(sock: socket.socket, drip: bytes, seconds: float) -> tuple[float, bytes]:
    """Drip `drip` once a second until the server closes; (seconds taken, what it sent)."""
    started = time.monotonic()
    sock.settimeout(1)
    received = b""
    while time.monotonic() - started < seconds:
        try:
            chunk = sock.recv(4096)
            if not chunk:
                return time.monotonic() - started, received
            received += chunk
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - started, received
        try:
            sock.sendall(drip)
        except OSError:
            return time.monotonic() - started, received
    return -1, received


def slow(args: argparse.Namespace) -> int:
    ok = True
    # 1. Slowloris: headers that never end, one line a second.
    with socket.create_connection((args.host, args.port), timeout=5) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: ci\r\n")
        took, answer = closed_after(sock, b"X-Slow: 1\r\n", 40)
    cut = 0 < took < 20
    ok &= cut
    print(f"slow headers: {'cut off' if cut else 'NOT cut off'} after {took:.1f} s; answer {answer[:40]!r}")
    # 2. A body larger than client_max_body_size, announced by Content-Length.
    with socket.create_connection((args.host, args.port), timeout=10) as sock:
        sock.sendall(b"POST /api/v1/people HTTP/1.1\r\nHost: ci\r\nContent-Length: 50000000\r\n\r\n" + b"x" * 1024)
        answer = sock.recv(200)
    status = answer.split(b" ", 2)[1:2]
    ok &= status == [b"413"]
    print(f"oversized body (50 MB): {answer.splitlines()[0] if answer else b'closed'!r}")
    # 3. A 64 KB header (over large_client_header_buffers).
    with socket.create_connection((args.host, args.port), timeout=10) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: ci\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n")
        answer = sock.recv(200)
    status = answer.split(b" ", 2)[1:2]
    ok &= status in ([b"400"], [b"431"], [b"494"])
    print(f"oversized header (64 KB): {answer.splitlines()[0] if answer else b'closed'!r}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="traffic.py")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("loop")
    p.add_argument("base")
    p.add_argument("--rate", type=float, default=20)
    p.add_argument("--max-seconds", type=float, default=600)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--total", type=int, required=True)
    p.add_argument("--out")
    p = sub.add_parser("bench")
    p.add_argument("base")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--concurrency", type=int, default=8)
    p = sub.add_parser("replicas")
    p.add_argument("base")
    p.add_argument("--requests", type=int, default=60)
    p = sub.add_parser("slow")
    p.add_argument("host")
    p.add_argument("port", type=int)
    args = parser.parse_args()
    return {"loop": loop, "bench": bench, "replicas": replicas, "slow": slow}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
