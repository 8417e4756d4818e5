"""Benchmark the API against Datasette on the same SQLite file, and time it on 1,000,000 rows.

    python -m benchmarks.api [--seconds 10] [--connections 8,32] [--workers 2] [--no-throughput]
                             [--db PATH] [--million-db PATH | --no-million] [--million-url URL]
                             [--ten-million-db PATH] [--fresh-upload]

1. Throughput: `/api/v1/people?gender=Female&age_min=30&limit=100` (exact total)
   against Datasette's `/census/people.json?gender=Female&age__gte=30&_size=100`
   on the same database file, both driven by `wrk` (the same threads, connections
   and duration; a Python load generator if wrk is missing), after checking
   that both answer the same query (same total, same filter on every row).
   Datasette runs twice: with its defaults, and with facet suggestions off
   (its fastest configuration for this query), so the comparison is fair.
2. Latency on 1,000,000 rows: median of sequential requests for filtered pages,
   /stats and /dimensions (a synthetic file resampled from the input, loaded by
   the real loader), the API process's memory, and (--fresh-upload) the time
   from an upload's commit to fresh answers; the same on PostgreSQL
   (--million-url) and on 10,000,000 rows (--ten-million-db).

3. CSV export of everyone (48,842 people): time, bytes, and the API process's
   peak memory (VmHWM) before and after.
4. gzip: bytes of a 1,000-row JSON page with and without `Accept-Encoding: gzip`.
5. Overhead of the operators' features: req/s with metrics, a (never reached)
   rate limit and the JSON access log on, against all three off (target: at most
   10% slower), and each feature alone; interleaved short trials (--overhead-trials
   of --overhead-seconds each), medians compared.

Everything runs on 127.0.0.1, and every server started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from devtools.servers import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
API_QUERY = "/api/v1/people?gender=Female&age_min=30&limit=100"
DATASETTE_QUERY = "/census/people.json?gender=Female&age__gte=30&_size=100"

# Requests timed on the 1,000,000-row database: (kind, URL).
MILLION_QUERIES: list[tuple[str, str]] = [
    ("page", "/api/v1/people?gender=Female&age_min=30&limit=100"),
    ("page", "/api/v1/people?gender=Female&age_min=30&limit=100&offset=5000"),
    ("page", "/api/v1/people?occupation=Sales&age_min=25&age_max=35&limit=100"),
    ("page", "/api/v1/people?race=Black&income=%3E50K&limit=100"),
    ("page", "/api/v1/people?education_num_min=13&hours_min=40&hours_max=60&limit=100"),
    ("page", "/api/v1/people?marital_status=Divorced&sort=-age&limit=100"),
    ("page", "/api/v1/people?native_country=unknown&limit=100"),
    ("page", "/api/v1/people?limit=100&offset=500000"),
    ("stats", "/api/v1/stats?gender=Female&age_min=30&group_by=race"),
    ("stats", "/api/v1/stats?occupation=Sales&group_by=age_band"),
    ("stats", "/api/v1/stats?race=Black&income=%3E50K&group_by=gender&group_by=age_band"),
    ("stats", "/api/v1/stats?age_min=60&group_by=education"),
    ("stats", "/api/v1/stats?group_by=gender"),
    ("stats", "/api/v1/stats?group_by=race&group_by=age_band"),
    ("dimensions", "/api/v1/dimensions"),
    ("dimensions", "/api/v1/dimensions/occupation?age_min=30&gender=Female"),
]


# base URL -> the server process (memory is read from its /proc entries)
PROCESSES: dict[str, subprocess.Popen[bytes]] = {}


@contextmanager
def serve(command: list[str], port: int, ready_path: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start a server, wait until `ready_path` answers, stop it afterwards."""
    with ServerProcess(command, port, ready_path=ready_path, env={**os.environ, **(env or {})}) as server:
        assert server.process is not None
        PROCESSES[server.base_url] = server.process
        try:
            yield server.base_url
        finally:
            PROCESSES.pop(server.base_url, None)


def build_database(source: Path | None, rows: int | None, target: Path) -> Path:
    """Load `source` (or `rows` synthetic rows) into a fresh SQLite file with the real loader."""
    if target.exists():
        return target
    csv = source
    if rows is not None:
        csv = target.with_suffix(".csv")
        subprocess.run([sys.executable, "-m", "benchmarks.synthetic", str(rows), str(csv)], cwd=ROOT, check=True)
    command = [sys.executable, "-m", "loaders.upload", *([str(csv)] if csv else []), "--url", f"sqlite:///{target}"]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    if rows is not None and csv:
        csv.unlink()
    return target


# --------------------------------------------------------------------------- load generation


def wrk(url: str, seconds: int, connections: int, threads: int) -> dict[str, float]:
    """Requests/s and latency percentiles (ms) from wrk."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "--latency", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    result = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}  # type: ignore[union-attr]
    for percent in ("50", "99"):
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if match:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
            result[f"p{percent}_ms"] = float(match.group(1)) * scale
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    result["requests"] = float(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    return result


def python_load(url: str, seconds: int, connections: int, _threads: int) -> dict[str, float]:
    """The fallback load generator: `connections` keep-alive clients in threads, closed loop."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        nonlocal errors
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                status = http.get(url).status_code
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    latencies.append(elapsed)
                    errors += status != 200

    pool = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.monotonic()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    duration = time.monotonic() - started
    latencies.sort()
    return {
        "requests_per_s": len(latencies) / duration,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "errors": float(errors),
        "requests": float(len(latencies)),
    }


# --------------------------------------------------------------------------- parts


def check_same_answer(api: str, datasette: str) -> int:
    """Both servers answer the same query: same exact total, 100 rows that all match."""
    ours = httpx.get(api + API_QUERY, timeout=60).json()
    theirs = httpx.get(datasette + DATASETTE_QUERY, timeout=60).json()
    columns = theirs["columns"]
    rows = [dict(zip(columns, row, strict=True)) for row in theirs["rows"]]
    assert ours["total"] == theirs["filtered_table_rows_count"], (ours["total"], theirs["filtered_table_rows_count"])
    assert len(ours["items"]) == len(rows) == 100
    for row in [*ours["items"], *rows]:
        assert row["gender"] == "Female" and row["age"] >= 30, row
    # Sorted the same way, Datasette returns exactly our page.
    sorted_page = httpx.get(datasette + DATASETTE_QUERY + "&_sort=id", timeout=60).json()
    assert [r[0] for r in sorted_page["rows"]] == [item["id"] for item in ours["items"]]
    return int(ours["total"])


def throughput(args: argparse.Namespace, db: Path) -> None:
    load = wrk if shutil.which("wrk") and not args.python_load else python_load
    generator = "wrk" if load is wrk else "python threads"
    print(
        f"\n== Throughput on {db} ({args.connections} connections, {args.seconds} s each, load generator: {generator})"
    )
    api_port, ds_port, ds_fast_port = free_port(), free_port(), free_port()
    api_cmd = [sys.executable, "-m", "api", "--port", str(api_port), "--workers", str(args.workers)]
    api_cmd += ["--log-level", "warning"]
    datasette = [sys.executable, "-m", "datasette", "serve", str(db), "-h", "127.0.0.1"]
    env = {"DATABASE_URL": f"sqlite:///{db}", "API_HOST": "127.0.0.1"}
    results: dict[str, dict[str, float]] = {}
    with serve(api_cmd, api_port, "/health", env) as api:
        with serve([*datasette, "-p", str(ds_port)], ds_port, "/census.json") as ds:
            total = check_same_answer(api, ds)
            print(f"same answer checked: total {total:,}, 100 rows, all gender=Female and age>=30")
            results["census API"] = load(api + API_QUERY, args.seconds, args.connections, args.threads)
            results["Datasette (defaults)"] = load(ds + DATASETTE_QUERY, args.seconds, args.connections, args.threads)
        fast = [*datasette, "-p", str(ds_fast_port), "--setting", "suggest_facets", "off"]
        with serve(fast, ds_fast_port, "/census.json") as ds:
            check_same_answer(api, ds)
            results["Datasette (suggest_facets off)"] = load(
                ds + DATASETTE_QUERY, args.seconds, args.connections, args.threads
            )
    print(f"{'server':34} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'requests':>9} {'non-2xx':>8}")
    for name, r in results.items():
        print(
            f"{name:34} {r['requests_per_s']:9.1f} {r.get('p50_ms', float('nan')):9.1f} "
            f"{r.get('p99_ms', float('nan')):9.1f} {r['requests']:9.0f} {r['errors']:8.0f}"
        )
    ours = results["census API"]["requests_per_s"]
    for name in ("Datasette (defaults)", "Datasette (suggest_facets off)"):
        if results[name]["requests"] == 0:
            print(f"census API / {name}: Datasette completed no request within {args.seconds} s")
            continue
        ratio = ours / results[name]["requests_per_s"]
        print(f"census API / {name}: {ratio:.1f}x  (target >= 3x: {'met' if ratio >= 3 else 'MISSED'})")


def wait_for_snapshot(http: httpx.Client, api: str, timeout_s: float = 120.0) -> float:
    """Steady state is what is measured: the API builds its analytic copy on a
    background thread after start-up (about 2 s per million people), and requests
    meanwhile answer in SQL while sharing the CPU with the build."""
    started = time.perf_counter()
    while not http.get(api + "/health").json().get("in_memory"):
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(f"the API's snapshot was not ready within {timeout_s:.0f} s")
        time.sleep(0.1)
    return time.perf_counter() - started


def million(args: argparse.Namespace, url: str) -> None:
    from warehouse.db import describe

    print(f"\n== Latency on {describe(url)} (median of {args.repeat} sequential requests after one warm-up)")
    port = free_port()
    command = [sys.executable, "-m", "api", "--port", str(port), "--log-level", "warning"]
    medians: dict[str, list[float]] = {"page": [], "stats": [], "dimensions": []}
    with serve(command, port, "/health", {"DATABASE_URL": url}) as api, httpx.Client(timeout=120) as http:
        people = http.get(api + "/health").json()["people"]
        print(f"people in the database: {people:,}")
        waited = wait_for_snapshot(http, api)
        print(f"the API's in-memory snapshot was ready {waited:.1f} s after the API answered")
        print(f"{'kind':6} {'median ms':>10} {'min ms':>8}  {'answer':>18}  query")
        for kind, query in MILLION_QUERIES:
            response = http.get(api + query)
            assert response.status_code == 200, response.text
            body = response.json()
            if kind == "page":
                answer = f"total {body['total']:,}"
            elif kind == "stats":
                answer = f"{len(body['groups'])} groups"
            else:
                answer = f"{len(body.get('dimensions', [body]))} dimension(s)"
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                http.get(api + query).raise_for_status()
                times.append((time.perf_counter() - start) * 1000)
            median = statistics.median(times)
            medians[kind].append(median)
            print(f"{kind:6} {median:10.1f} {min(times):8.1f}  {answer:>18}  {query}")
        print_memory(api, people)
        if args.fresh_upload:
            time_to_fresh_answers(http, api, url, people)
    targets = {"page": 100, "stats": 300 if people > 5_000_000 else 50, "dimensions": 100}
    for kind, values in medians.items():
        under = sum(v <= targets[kind] for v in values)
        print(
            f"{kind}: median of medians {statistics.median(values):.1f} ms, worst {max(values):.1f} ms, "
            f"{under}/{len(values)} at most {targets[kind]} ms"
        )


def print_memory(api: str, people: int) -> None:
    """The API process's resident memory now and at its peak (Linux /proc)."""
    process = PROCESSES.get(api)
    if process is None:
        return
    fields = {}
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) * 1024
    # RssFile is file-backed pages (SQLite's mmap of the database, the analytic
    # file's reads): shared with every process through the page cache. RssAnon is
    # the process's own memory.
    print(
        f"API process memory: {fields['VmRSS'] / 1e6:.0f} MB resident (own {fields['RssAnon'] / 1e6:.0f} MB, "
        f"shared file pages {fields['RssFile'] / 1e6:.0f} MB), peak {fields['VmHWM'] / 1e6:.0f} MB ({people:,} people)"
    )


def time_to_fresh_answers(http: httpx.Client, api: str, url: str, people: int) -> None:
    """Upload 1,000 more people while the API runs; time from the upload's commit
    (the loader's exit) to /stats counting them, and to the analytic copy being in use again."""
    with tempfile.TemporaryDirectory(prefix="census-fresh-") as work:
        from benchmarks.synthetic import write_synthetic

        csv = Path(work) / "more.csv"
        # A new seed each time: the same file again would be a no-op upload (same sha256).
        write_synthetic(1000, csv, seed=time.time_ns() % 2**32)
        subprocess.run(
            [sys.executable, "-m", "loaders.upload", str(csv), "--url", url], cwd=ROOT, check=True, capture_output=True
        )
    committed = time.perf_counter()
    while True:
        try:
            answer = http.get(api + "/api/v1/stats", params={"measures": "people"}, timeout=600).json()
        except httpx.TimeoutException:
            continue
        if answer["groups"][0]["people"] == people + 1000:
            break
        time.sleep(0.05)
    fresh = time.perf_counter() - committed
    while not http.get(api + "/health").json().get("in_memory"):
        time.sleep(0.1)
    copied = time.perf_counter() - committed
    print(f"upload commit -> fresh /stats answer: {fresh:.2f} s; -> analytic copy in use again: {copied:.1f} s")


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def export_and_gzip(db: Path) -> None:
    print(f"\n== CSV export and gzip on {db}")
    port = free_port()
    command = [sys.executable, "-m", "api", "--port", str(port), "--log-level", "warning"]
    with serve(command, port, "/health", {"DATABASE_URL": f"sqlite:///{db}"}) as api, httpx.Client(timeout=300) as http:
        wait_for_snapshot(http, api)
        pid = PROCESSES[api].pid
        before = _peak_rss_mb(pid) if pid else float("nan")
        started = time.perf_counter()
        size = lines = 0
        with http.stream("GET", api + "/api/v1/people?format=csv", headers={"Accept-Encoding": "identity"}) as r:
            for chunk in r.iter_raw():
                size += len(chunk)
                lines += chunk.count(b"\n")
        elapsed = time.perf_counter() - started
        after = _peak_rss_mb(pid) if pid else float("nan")
        print(
            f"CSV of everyone: {lines - 1:,} people, {size / 1e6:.1f} MB in {elapsed:.2f} s; "
            f"API peak memory {before:.0f} MB before, {after:.0f} MB after (+{after - before:.0f} MB)"
        )
        page = api + "/api/v1/people?limit=1000"
        plain = len(http.get(page, headers={"Accept-Encoding": "identity"}).content)
        response = http.send(http.build_request("GET", page, headers={"Accept-Encoding": "gzip"}), stream=True)
        zipped = len(b"".join(response.iter_raw()))
        response.close()
        print(f"1,000-row JSON page: {plain:,} bytes plain, {zipped:,} bytes gzip ({plain / zipped:.1f}x smaller)")


# Each configuration of the operators' features, as the API's environment.
OVERHEAD_CONFIGS: dict[str, dict[str, str]] = {
    "all off": {"API_METRICS": "0", "API_RATE_LIMIT": "0", "API_ACCESS_LOG": "0"},
    "all on": {"API_METRICS": "1", "API_RATE_LIMIT": "100000000", "API_ACCESS_LOG": "1"},
    "metrics only": {"API_METRICS": "1", "API_RATE_LIMIT": "0", "API_ACCESS_LOG": "0"},
    "rate limit only": {"API_METRICS": "0", "API_RATE_LIMIT": "100000000", "API_ACCESS_LOG": "0"},
    "access log only": {"API_METRICS": "0", "API_RATE_LIMIT": "0", "API_ACCESS_LOG": "1"},
}


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` and its descendants
    (uvicorn's workers), from /proc; 0 for a process that has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return own + sum(_cpu_s(int(child)) for child in children)


def _timed_load(load: Any, url: str, pid: int, seconds: int, connections: int, threads: int) -> dict[str, float]:
    """One load run, with the server's CPU milliseconds per request: unlike req/s,
    that figure hardly moves when other programs compete for the CPU."""
    before = _cpu_s(pid)
    result = load(url, seconds, connections, threads)
    result["cpu_ms"] = (_cpu_s(pid) - before) * 1000 / max(1.0, result["requests"])
    return result


def overhead(args: argparse.Namespace, db: Path) -> None:
    """req/s with the operators' features on against off, as interleaved short trials.

    Every configuration runs as its own server, all started up front; after a
    warm-up, each round runs one short trial per configuration (the order rotating
    from round to round), so a burst of load from elsewhere on the machine hits
    every configuration alike. Each configuration's figure is the median of its
    trials; the ratio is the ratio of medians, with the per-round (paired) ratios'
    spread next to it. The server's CPU time per request is measured alongside:
    the ratio of those (off / on) is what req/s would be on an otherwise idle
    machine where the server is CPU-bound, and it is far less noisy under load."""
    load = wrk if shutil.which("wrk") and not args.python_load else python_load
    connections = int(str(args.connections).split(",")[0])
    trials, seconds = args.overhead_trials, args.overhead_seconds
    print(
        f"\n== Metrics + rate limit + access log on vs off ({connections} connections, {args.workers} workers; "
        f"{trials} interleaved trials of {seconds} s per configuration after a warm-up)"
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    command = [sys.executable, "-m", "api", "--workers", str(args.workers), "--log-level", "warning"]
    with contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}
        pids: dict[str, int] = {}
        for name, env in OVERHEAD_CONFIGS.items():
            port = free_port()
            base = stack.enter_context(
                serve([*command, "--port", str(port)], port, "/health", {"DATABASE_URL": f"sqlite:///{db}", **env})
            )
            with httpx.Client(timeout=60) as http:
                wait_for_snapshot(http, base)
            urls[name] = base + API_QUERY
            pids[name] = PROCESSES[base].pid
        names = list(urls)
        for name in names:  # warm-up: caches, lazily built objects, every worker
            load(urls[name], max(1, seconds // 2), connections, args.threads)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        loads: list[float] = []  # the 1-minute load average after each round
        for round_ in range(trials):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                runs[name].append(_timed_load(load, urls[name], pids[name], seconds, connections, args.threads))
            loads.append(os.getloadavg()[0])
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"1-minute load average after each round: {' '.join(f'{x:.1f}' for x in loads)} ({os.cpu_count()} cores)")
    print("req/s of every trial, by round:")
    for name in names:
        rates = " ".join(f"{r['requests_per_s']:7.1f}" for r in runs[name])
        print(f"  {name:16} {rates}")
    off = [r["requests_per_s"] for r in runs["all off"]]
    off_cpu = statistics.median(r["cpu_ms"] for r in runs["all off"])
    print(
        f"{'configuration':16} {'median req/s':>12} {'min':>7} {'max':>7} {'p50 ms':>7} {'non-2xx':>7} {'vs off':>6}  "
        f"{'paired: median (min-max)':>24}  {'CPU ms/req':>10} {'off/this':>8}"
    )
    for name in names:
        rates = [r["requests_per_s"] for r in runs[name]]
        errors = sum(r["errors"] for r in runs[name])
        p50 = statistics.median(r.get("p50_ms", float("nan")) for r in runs[name])
        paired = [on / base for on, base in zip(rates, off, strict=True)]
        ratio = statistics.median(rates) / statistics.median(off)
        cpu = statistics.median(r["cpu_ms"] for r in runs[name])
        spread = f"{statistics.median(paired):.3f} ({min(paired):.3f}-{max(paired):.3f})"
        print(
            f"{name:16} {statistics.median(rates):12.1f} {min(rates):7.1f} {max(rates):7.1f} {p50:7.1f} "
            f"{errors:7.0f} {ratio:6.3f}  {spread:>24}  {cpu:10.2f} {off_cpu / cpu:8.3f}"
        )
    ratio = statistics.median(r["requests_per_s"] for r in runs["all on"]) / statistics.median(off)
    cpu_ratio = off_cpu / statistics.median(r["cpu_ms"] for r in runs["all on"])
    print(
        f"all on / all off, ratio of median req/s: {ratio:.3f} "
        f"(target >= 0.90: {'met' if ratio >= 0.9 else 'MISSED'}); by server CPU per request: {cpu_ratio:.3f}"
    )
    if max(loads) > (os.cpu_count() or 1):
        print("(the machine was busier than its cores: req/s moved with the other load; CPU per request did not)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="duration of each load run")
    parser.add_argument("--connections", default="8,32", help="comma-separated connection counts for wrk")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers for the API")
    parser.add_argument("--repeat", type=int, default=7, help="timed requests per query on 1M rows")
    parser.add_argument("--db", type=Path, help="SQLite file to serve (default: built from the input file)")
    parser.add_argument("--million-db", type=Path, help="a 1,000,000-row SQLite file (default: built here)")
    parser.add_argument("--million-url", help="also time a 1,000,000-row PostgreSQL (or other) database URL")
    parser.add_argument("--no-million", action="store_true", help="skip the 1,000,000-row part")
    parser.add_argument("--no-throughput", action="store_true", help="skip the comparison with Datasette")
    parser.add_argument("--ten-million-db", type=Path, help="also time a 10,000,000-row SQLite file")
    parser.add_argument(
        "--fresh-upload", action="store_true", help="after the latencies, time an upload's commit to fresh answers"
    )
    parser.add_argument("--python-load", action="store_true", help="use the Python load generator even if wrk exists")
    parser.add_argument("--overhead-trials", type=int, default=7, help="interleaved trials per overhead configuration")
    parser.add_argument("--overhead-seconds", type=int, default=3, help="duration of each overhead trial")
    parser.add_argument("--only-new", action="store_true", help="only the export, gzip and overhead figures")
    args = parser.parse_args(argv)
    print(f"load average: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="census-api-bench-") as work:
        db = args.db or build_database(None, None, Path(work) / "census.db")
        export_and_gzip(db.resolve())
        overhead(args, db.resolve())
        if args.only_new:
            print(f"load average: {os.getloadavg()}")
            return
        if not args.no_throughput:
            for connections in (int(c) for c in str(args.connections).split(",")):
                throughput(argparse.Namespace(**{**vars(args), "connections": connections}), db.resolve())
        if not args.no_million:
            big = args.million_db or build_database(None, 1_000_000, Path(work) / "census_1m.db")
            million(args, f"sqlite:///{big.resolve()}")
        if args.million_url:
            million(args, args.million_url)
        if args.ten_million_db:
            million(args, f"sqlite:///{args.ten_million_db.resolve()}")
    print(json.dumps({"done": True}))


if __name__ == "__main__":
    main()
