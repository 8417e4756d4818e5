"""Benchmark the API against Datasette on the same SQLite file, and time it on 1,000,000 rows.

    python -m benchmarks.api [--seconds 10] [--connections 8,32] [--workers 2] [--no-throughput]
                             [--db PATH] [--million-db PATH | --no-million] [--million-url URL]
                             [--ten-million-db PATH] [--fresh-upload] [--only-intervals]

1. Throughput: `/api/v1/people?gender=Female&age_min=30&limit=100` (exact total)
   against Datasette's `/census/people.json?gender=Female&age__gte=30&_size=100`
   on the same database file, both driven by `wrk` (the same threads, connections
   and duration; a Python load generator if wrk is missing), after checking
   that both answer the same query (same total, same filter on every row).
   Datasette runs twice: with its defaults, and with facet suggestions off
   (its fastest configuration for this query), so the comparison is fair.
   Against the latter, two more workloads (wrk Lua scripts, the same questions
   in each server's query language, totals checked equal on a sample): 200
   pages of 8 filters cycled, and a random filter and offset per request (which
   the API's count cache cannot serve). Each run also prints the server's CPU
   time per request (all its processes), which the machine's load distorts less
   than requests per second.
2. Latency on 1,000,000 rows: median of sequential requests for filtered pages,
   /stats and /dimensions (a synthetic file resampled from the input, loaded by
   the real loader), the API process's memory (resident: own and shared file
   pages; target 600 MB on 10,000,000 people), and (--fresh-upload) the time
   from an upload's commit to fresh answers; the same on PostgreSQL
   (--million-url) and on 10,000,000 rows (--ten-million-db).

3. CSV export of everyone (48,842 people): time, bytes, and the API process's
   peak memory (VmHWM) before and after.
4. gzip: bytes of a 1,000-row JSON page with and without `Accept-Encoding: gzip`.
5. Overhead of the operators' features: req/s with metrics, a (never reached)
   rate limit and the JSON access log on, against all three off (target: at most
   10% slower), and each feature alone; interleaved short trials (--overhead-trials
   of --overhead-seconds each), medians compared.
6. (--only-intervals, or as part of the 1,000,000-row run) /stats with intervals and
   census-weighted variants (the default) against the same queries with
   `intervals=false`, on 1,000,000 people: both medians and their ratio (target:
   at most 1.3x).

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


def wrk(url: str, seconds: int, connections: int, threads: int, script: Path | None = None) -> dict[str, float]:
    """Requests/s and latency percentiles (ms) from wrk (`script`: a Lua script choosing each request)."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "--latency", url]
    if script is not None:
        command[1:1] = ["-s", str(script)]
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


# The same questions put to both servers, each in its own query language: the
# census API's filter parameters and Datasette's column__op filters, a page of
# 100 at an offset (Datasette pages a view by offset with `_next`).
PAGE_FILTERS: list[tuple[str, str]] = [
    ("gender=Female&age_min=30", "gender=Female&age__gte=30"),
    ("race=Black", "race=Black"),
    ("occupation=Sales&age_min=25&age_max=35", "occupation=Sales&age__gte=25&age__lte=35"),
    (
        "education_num_min=13&hours_min=40&hours_max=60",
        "education_num__gte=13&hours_per_week__gte=40&hours_per_week__lte=60",
    ),
    ("marital_status=Divorced", "marital_status=Divorced"),
    ("native_country=United-States&income=%3E50K", "native_country=United-States&income=%3E50K"),
    ("workclass=Private&age_max=30", "workclass=Private&age__lte=30"),
    ("relationship=Wife", "relationship=Wife"),
]
CYCLE_OFFSETS = range(0, 2500, 100)  # 8 filters x 25 offsets = 200 different pages
RANDOM_FORMATS = {  # gender, age_min, age_max, hours_max, offset
    "api": "/api/v1/people?gender=%s&age_min=%d&age_max=%d&hours_max=%d&limit=100&offset=%d",
    "datasette": "/census/people.json?gender=%s&age__gte=%d&age__lte=%d&hours_per_week__lte=%d&_size=100&_next=%d",
}
WORKLOADS = {
    "one query": "the same page every time (what a count cache serves best)",
    "200 pages": "8 filters x 25 offsets, cycled (paging through popular filters)",
    "random": "a random filter (gender, age range, hours cap: ~350,000 filters) and offset each time",
}


def cycle_paths(server: str) -> list[str]:
    index = 0 if server == "api" else 1
    prefix = "/api/v1/people?" if server == "api" else "/census/people.json?"
    size = "limit=100&offset=" if server == "api" else "_size=100&_next="
    return [f"{prefix}{pair[index]}&{size}{offset}" for pair in PAGE_FILTERS for offset in CYCLE_OFFSETS]


def workload_script(workload: str, server: str, directory: Path) -> Path | None:
    """A wrk Lua script asking `server`'s form of the workload's questions (None: one URL)."""
    if workload == "one query":
        return None
    # Each wrk thread gets its own Lua state: `setup` numbers them, so threads
    # start at different pages and seed their random numbers differently.
    common = """
local threads = 0
function setup(thread) thread:set("id", threads); threads = threads + 1 end
"""
    if workload == "200 pages":
        paths = ", ".join(f'"{path}"' for path in cycle_paths(server))
        body = f"""
local paths = {{{paths}}}
local index = 0
function init(args) index = (id or 0) * 97 end
function request() index = index % #paths + 1; return wrk.format("GET", paths[index]) end
"""
    else:
        body = f"""
local genders = {{"Female", "Male"}}
function init(args) math.randomseed(os.time() * 1000 + (id or 0) * 7919) end
function request()
  local low = math.random(17, 60)
  local path = string.format("{RANDOM_FORMATS[server]}", genders[math.random(2)], low, math.random(low, 90),
    math.random(20, 99), math.random(0, 20) * 100)
  return wrk.format("GET", path)
end
"""
    script = directory / f"{server}-{workload.replace(' ', '-')}.lua"
    script.write_text(common + body)
    return script


def check_same_totals(api: str, datasette: str) -> None:
    """Both forms of the varied workloads ask the same questions: same totals on a sample."""
    random_pair = [RANDOM_FORMATS[s] % ("Male", 33, 47, 45, 200) for s in ("api", "datasette")]
    for ours, theirs in [*zip(cycle_paths("api")[::40], cycle_paths("datasette")[::40]), random_pair]:
        total = httpx.get(api + ours, timeout=60).json()["total"]
        count = httpx.get(datasette + theirs, timeout=60).json()["filtered_table_rows_count"]
        assert total == count, (ours, total, theirs, count)


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants (uvicorn's workers)."""
    pids, total = [pid], 0
    while pids:
        current = pids.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                pids += [int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def measured(load: Any, base: str, url: str, args: argparse.Namespace, script: Path | None) -> dict[str, float]:
    """One load run, with the server's CPU time per request (all its processes):
    what the load average cannot distort as much as requests per second."""
    process = PROCESSES[base]
    before = _tree_cpu_s(process.pid)
    result = (
        wrk(url, args.seconds, args.connections, args.threads, script)
        if script
        else load(url, args.seconds, args.connections, args.threads)
    )
    result["cpu_ms"] = (_tree_cpu_s(process.pid) - before) * 1000 / max(1.0, result["requests"])
    return result


def throughput(args: argparse.Namespace, db: Path) -> None:
    load = wrk if shutil.which("wrk") and not args.python_load else python_load
    generator = "wrk" if load is wrk else "python threads"
    print(
        f"\n== Throughput on {db} ({args.connections} connections, {args.seconds} s each, load generator: {generator})"
    )
    print(
        f"census API: uvicorn, {args.workers} worker processes, default settings (access log, metrics and ETags on). "
        "Datasette: `datasette serve` (one process), its defaults, then with suggest_facets off; both read "
        "the same file, and pages of 100 with an exact total."
    )
    for workload, meaning in WORKLOADS.items():
        print(f"  workload {workload!r}: {meaning}")
    if load is not wrk:
        print("  (without wrk only the 'one query' workload runs)")
    api_port, ds_port, ds_fast_port = free_port(), free_port(), free_port()
    api_cmd = [sys.executable, "-m", "api", "--port", str(api_port), "--workers", str(args.workers)]
    api_cmd += ["--log-level", "warning"]
    datasette = [sys.executable, "-m", "datasette", "serve", str(db), "-h", "127.0.0.1"]
    env = {"DATABASE_URL": f"sqlite:///{db}", "API_HOST": "127.0.0.1"}
    workloads = list(WORKLOADS) if load is wrk else ["one query"]
    results: dict[tuple[str, str], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="census-wrk-") as scripts, serve(api_cmd, api_port, "/health", env) as api:
        with httpx.Client(timeout=120) as http:
            wait_for_snapshot(http, api)
        with serve([*datasette, "-p", str(ds_port)], ds_port, "/census.json") as ds:
            total = check_same_answer(api, ds)
            print(f"same answer checked: total {total:,}, 100 rows, all gender=Female and age>=30")
            results[("census API", "one query")] = measured(load, api, api + API_QUERY, args, None)
            results[("Datasette (defaults)", "one query")] = measured(load, ds, ds + DATASETTE_QUERY, args, None)
        fast = [*datasette, "-p", str(ds_fast_port), "--setting", "suggest_facets", "off"]
        with serve(fast, ds_fast_port, "/census.json") as ds:
            check_same_answer(api, ds)
            check_same_totals(api, ds)
            for workload in workloads:
                for name, base, url, server in (
                    ("census API", api, api + API_QUERY, "api"),
                    ("Datasette (suggest_facets off)", ds, ds + DATASETTE_QUERY, "datasette"),
                ):
                    if (name, workload) in results:
                        continue
                    script = workload_script(workload, server, Path(scripts))
                    results[(name, workload)] = measured(load, base, url, args, script)
    print(
        f"{'server':32} {'workload':10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'requests':>8} {'non-2xx':>7} {'CPU ms/req':>10}"
    )
    for (name, workload), r in results.items():
        print(
            f"{name:32} {workload:10} {r['requests_per_s']:8.1f} {r.get('p50_ms', float('nan')):8.1f} "
            f"{r.get('p99_ms', float('nan')):8.1f} {r['requests']:8.0f} {r['errors']:8.0f} {r['cpu_ms']:10.2f}"
        )
    for name, workload in [("Datasette (defaults)", "one query")] + [
        ("Datasette (suggest_facets off)", w) for w in workloads
    ]:
        theirs, ours = results[(name, workload)], results[("census API", workload)]
        if theirs["requests"] == 0:
            print(f"census API / {name}, {workload}: Datasette completed no request within {args.seconds} s")
            continue
        ratio = ours["requests_per_s"] / theirs["requests_per_s"]
        cpu = theirs["cpu_ms"] / ours["cpu_ms"] if ours["cpu_ms"] else float("nan")
        print(
            f"census API / {name}, {workload}: {ratio:.1f}x the requests per second "
            f"(target >= 3x: {'met' if ratio >= 3 else 'MISSED'}); {cpu:.1f}x less CPU per request"
        )
    print(f"load average: {os.getloadavg()}")


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
        # A new data version (e.g. after --fresh-upload) is copied again: minutes on 10,000,000.
        waited = wait_for_snapshot(http, api, timeout_s=max(120.0, people / 1e6 * 60))
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
    # RssFile is file-backed pages (the libraries, the analytic file's reads, and
    # SQLite's map of the database if one is set): shared with every process
    # through the page cache. RssAnon is the process's own memory (Python, SQLite's
    # page caches, DuckDB's buffers).
    from warehouse.db import READ_CACHE_KIB, READ_MMAP_BYTES

    print(
        f"API process memory: {fields['VmRSS'] / 1e6:.0f} MB resident (own {fields['RssAnon'] / 1e6:.0f} MB, "
        f"shared file pages {fields['RssFile'] / 1e6:.0f} MB), peak {fields['VmHWM'] / 1e6:.0f} MB ({people:,} people; "
        f"SQLite mmap {READ_MMAP_BYTES / 2**20:.0f} MiB, page cache {READ_CACHE_KIB / 1024:.0f} MiB per connection; "
        f"target <= 600 MB: {'met' if fields['VmRSS'] <= 600e6 else 'MISSED'})"
    )


def time_to_fresh_answers(http: httpx.Client, api: str, url: str, people: int) -> None:
    """Upload 1,000 more people while the API runs; time from the upload's commit
    (the loader's exit) to /stats counting them, and to the analytic copy being in use again."""
    with tempfile.TemporaryDirectory(prefix="census-fresh-") as work:
        from benchmarks.synthetic import write_synthetic

        # A new seed and name each time: the same rows again would be a no-op upload,
        # other rows under a name already loaded a refusal (run twice on one database).
        seed = time.time_ns() % 2**32
        csv = Path(work) / f"more-{seed}.csv"
        write_synthetic(1000, csv, seed=seed)
        loaded = subprocess.run(
            [sys.executable, "-m", "loaders.upload", str(csv), "--url", url], cwd=ROOT, capture_output=True, text=True
        )
        if loaded.returncode != 0:
            raise RuntimeError(f"the upload failed (exit {loaded.returncode}): {loaded.stderr.strip()}")
    committed = time.perf_counter()
    while True:
        try:
            response = http.get(api + "/api/v1/stats", params={"measures": "people"}, timeout=600)
        except httpx.TimeoutException:
            continue
        # While the copy is rebuilt, /stats is answered in SQL; on 10,000,000 people
        # that can pass the statement deadline: a 503 with Retry-After, not an answer.
        if response.status_code == 200 and response.json()["groups"][0]["people"] == people + 1000:
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


# --------------------------------------------------------------------------- intervals on /stats (issue 14)

INTERVAL_TARGET = 1.3


def intervals_cost(args: argparse.Namespace, url: str, sql: bool = False) -> None:
    """Every /stats query of MILLION_QUERIES with its intervals and census-weighted
    variants (the default) and with `intervals=false`, interleaved request by request
    so both see the same load; per query both medians and their ratio, then the
    median ratio against the target. `sql`: without the analytic copy (COLUMNAR_MAX_ROWS=0)."""
    from warehouse.db import describe

    engine = "SQL, no analytic copy" if sql else "the analytic copy"
    print(f"\n== /stats with intervals vs intervals=false on {describe(url)}, {engine} (median of {args.repeat} pairs)")
    port = free_port()
    command = [sys.executable, "-m", "api", "--port", str(port), "--log-level", "warning"]
    env = {"DATABASE_URL": url, "API_ACCESS_LOG": "0", **({"COLUMNAR_MAX_ROWS": "0"} if sql else {})}
    ratios = []
    with serve(command, port, "/health", env) as api, httpx.Client(timeout=120) as http:
        people = http.get(api + "/health").json()["people"]
        if not sql:
            print(f"analytic copy ready after {wait_for_snapshot(http, api):.1f} s")
        print(f"people: {people:,}")
        print(f"{'with ms':>8} {'plain ms':>9} {'ratio':>6} {'sample ms':>9} {'ratio':>6} {'groups':>6}  query")
        sample_ratios = []
        for kind, query in MILLION_QUERIES:
            if kind != "stats":
                continue
            variants = {"full": query, "plain": f"{query}&intervals=false", "sample": f"{query}&weighted=false"}
            full_body, plain_body = http.get(api + query).json(), http.get(api + variants["plain"]).json()  # check
            assert len(full_body["groups"]) == len(plain_body["groups"])
            assert "share_over_50k_weighted_ci_low" in full_body["groups"][0], "no intervals in the answer"
            http.get(api + variants["sample"]).raise_for_status()
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.repeat):
                for name, target in variants.items():
                    start = time.perf_counter()
                    http.get(api + target).raise_for_status()
                    times[name].append((time.perf_counter() - start) * 1000)
            full, bare, sample = (statistics.median(times[name]) for name in ("full", "plain", "sample"))
            ratios.append(full / bare)
            sample_ratios.append(sample / bare)
            print(
                f"{full:8.1f} {bare:9.1f} {full / bare:6.2f} {sample:9.1f} {sample / bare:6.2f} "
                f"{len(full_body['groups']):6}  {query}"
            )
    ratio = statistics.median(ratios)
    verdict = "met" if ratio <= INTERVAL_TARGET else "MISSED"
    print(
        f"with intervals and weighted variants / without: median ratio {ratio:.2f}, worst {max(ratios):.2f} "
        f"(target <= {INTERVAL_TARGET}: {verdict}); sample intervals only (weighted=false): median ratio "
        f"{statistics.median(sample_ratios):.2f}; load average {os.getloadavg()}"
    )


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
    parser.add_argument(
        "--only-intervals",
        action="store_true",
        help="only /stats with vs without intervals on 1,000,000 rows (--million-db, --million-url)",
    )
    parser.add_argument(
        "--intervals-sql", action="store_true", help="with --only-intervals: also without the analytic copy"
    )
    args = parser.parse_args(argv)
    print(f"load average: {os.getloadavg()}")
    if args.only_intervals:
        with tempfile.TemporaryDirectory(prefix="census-api-bench-") as work:
            # --million-db: kept between runs (built there the first time).
            big = build_database(None, 1_000_000, args.million_db or Path(work) / "census_1m.db")
            intervals_cost(args, f"sqlite:///{big.resolve()}")
            if args.intervals_sql:
                intervals_cost(args, f"sqlite:///{big.resolve()}", sql=True)
            if args.million_url:
                intervals_cost(args, args.million_url)
        return
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
            intervals_cost(args, f"sqlite:///{big.resolve()}")
        if args.million_url:
            million(args, args.million_url)
        if args.ten_million_db:
            million(args, f"sqlite:///{args.ten_million_db.resolve()}")
    print(json.dumps({"done": True}))


if __name__ == "__main__":
    main()
