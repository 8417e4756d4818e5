"""The API's HTTP layer against a live `python -m api` (uvicorn + httptools, as shipped):
hostile requests, output formats, ETags, gzip, request ids, the access log,
metrics, the offline docs, CORS and the rate limit.

Expected rows come from the input file read with pandas (`input_frame`), never
from the query layer the API uses.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from litestar.testing import TestClient

from api.app import create_app
from devtools.servers import ServerProcess, free_port
from loaders.upload import upload
from tests.test_api import PEOPLE, select
from warehouse.config import DEFAULT_SOURCE, sqlite_url
from warehouse.db import make_engine

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def live_server(env: dict[str, str], log: Path | None = None) -> Iterator[str]:
    """`python -m api` on a free port with `env`; its output goes to `log`."""
    port = free_port()
    command = [sys.executable, "-m", "api", "--log-level", "warning"]
    server_env = {**os.environ, "API_PORT": str(port), **env}
    with ServerProcess(command, port, ready_path="/health", env=server_env, log=log, start_timeout_s=30) as server:
        yield server.base_url


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-log") / "stderr.log"


@pytest.fixture(scope="module")
def api(sqlite_census_url: str, server_log: Path) -> Iterator[str]:
    env = {"DATABASE_URL": sqlite_census_url, "API_HEADER_TIMEOUT": "2", "API_RATE_LIMIT": "0"}
    with live_server(env, server_log) as base:
        yield base


def raw_exchange(base: str, data: bytes, wait_s: float = 3.0) -> bytes:
    """Send `data` on a fresh connection; everything the server answers until it closes."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as connection:
        connection.settimeout(wait_s)
        # The server may refuse before reading everything; its answer is still there.
        with contextlib.suppress(OSError):
            connection.sendall(data)
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return answer


def json_error(answer: bytes, status: int) -> dict[str, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]
    assert b"content-type: application/json" in head.lower()
    parsed: dict[str, Any] = json.loads(body)
    assert parsed["status"] == status and parsed["detail"]
    return parsed


# --------------------------------------------------------------------------- hostile requests


def test_content_length_with_transfer_encoding_is_refused_and_nothing_smuggled(api: str) -> None:
    smuggled = b"GET /api/v1/people/1 HTTP/1.1\r\nHost: x\r\n\r\n"
    request = (
        b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        + smuggled
    )
    answer = raw_exchange(api, request)
    body = json_error(answer, 400)
    assert "Transfer-Encoding" in body["detail"]
    assert answer.count(b"HTTP/1.1 ") == 1  # the smuggled request got no answer


def test_bare_lf_and_unknown_versions_are_refused(api: str) -> None:
    json_error(raw_exchange(api, b"GET /health HTTP/1.1\nHost: x\n\n"), 400)
    assert "version" in json_error(raw_exchange(api, b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n"), 400)["detail"]


def test_slow_request_head_is_cut_off(api: str) -> None:
    host, port = api.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port))) as connection:
        connection.settimeout(10)
        connection.sendall(b"GET /health HTTP/1.1\r\n")
        try:
            for _ in range(8):  # one header a second: never a complete head
                time.sleep(1)
                connection.sendall(b"X-Slow: 1\r\n")
        except OSError:
            pass
        answer = connection.recv(65536)
    elapsed = time.monotonic() - started
    json_error(answer, 408)
    assert elapsed < 6, elapsed  # API_HEADER_TIMEOUT=2 here, plus the lingering close


def test_huge_target_is_414_and_huge_head_431(api: str) -> None:
    json_error(raw_exchange(api, b"GET /health?" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"), 414)
    headers = b"".join(b"X-%d: %s\r\n" % (n, b"v" * 1000) for n in range(200))
    json_error(raw_exchange(api, b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"), 431)
    # The server still answers normally afterwards.
    assert httpx.get(f"{api}/health").status_code == 200


# --------------------------------------------------------------------------- request ids and access log


def test_request_ids_and_json_access_log(api: str, server_log: Path) -> None:
    mine = httpx.get(f"{api}{PEOPLE}/7", headers={"X-Request-Id": "trace-42.a"})
    assert mine.headers["x-request-id"] == "trace-42.a"
    fresh = httpx.get(f"{api}{PEOPLE}/7", headers={"X-Request-Id": "bad id\twith spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])
    assert httpx.get(f"{api}{PEOPLE}/999999").headers["x-request-id"]  # errors too
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in server_log.read_text().splitlines() if line.startswith("{")]
        logged = [line for line in lines if line["request_id"] == "trace-42.a"]
        if logged or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert logged, lines[-3:]
    entry = logged[0]
    assert entry["method"] == "GET" and entry["path"] == f"{PEOPLE}/7" and entry["status"] == 200
    assert entry["bytes"] == len(mine.content) and entry["ms"] >= 0 and entry["client"] == "127.0.0.1"


def test_head_on_the_wire_is_the_get_head_and_nothing_more(api: str, server_log: Path) -> None:
    """On one keep-alive connection: HEAD's answer ends after its head (the next
    response follows at once), with GET's Content-Length; the log says HEAD, 0 bytes."""
    get = httpx.get(f"{api}{PEOPLE}/7")
    pair = b"HEAD /api/v1/people/7 HTTP/1.1\r\nHost: x\r\nX-Request-Id: head-7\r\n\r\n"
    pair += b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = raw_exchange(api, pair)
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer[:300]
    assert f"content-length: {get.headers['content-length']}".encode() in head.lower()
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:300]  # no body bytes between the two answers
    for path in ("/health", f"{PEOPLE}?format=csv", f"{PEOPLE}?format=ndjson&gender=Female", f"{PEOPLE}/999999"):
        assert httpx.head(f"{api}{path}", timeout=60).status_code == httpx.get(f"{api}{path}", timeout=60).status_code
    deadline = time.monotonic() + 5
    logged: list[dict[str, Any]] = []
    while not logged and time.monotonic() < deadline:
        lines = [json.loads(line) for line in server_log.read_text().splitlines() if line.startswith("{")]
        logged = [line for line in lines if line["request_id"] == "head-7"]
        time.sleep(0.1)
    assert logged and logged[0]["method"] == "HEAD" and logged[0]["bytes"] == 0 and logged[0]["status"] == 200


# --------------------------------------------------------------------------- formats


def _csv_frame(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])


@pytest.mark.parametrize(
    "params",
    [
        {"gender": "Female", "age_min": 30, "occupation": ["Sales", "unknown"]},
        {"native_country": ["unknown", "Mexico"], "income": ">50K"},
    ],
)
def test_csv_of_a_filtered_set_equals_pandas(api: str, input_frame: pd.DataFrame, params: dict[str, Any]) -> None:
    response = httpx.get(f"{api}{PEOPLE}", params={**params, "format": "csv"}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    expected = select(input_frame, params)
    assert int(response.headers["x-total-count"]) == len(expected)
    got = _csv_frame(response.text)
    assert list(got.columns) == ["id", *input_frame.columns]
    assert got["id"].tolist() == [index + 1 for index in expected.index]
    pd.testing.assert_frame_equal(
        got.drop(columns="id").reset_index(drop=True),
        expected.reset_index(drop=True),
        check_dtype=False,
    )


def test_csv_of_everyone_is_streamed_in_chunks(api: str, input_frame: pd.DataFrame) -> None:
    chunks = 0
    data = b""
    with httpx.stream("GET", f"{api}{PEOPLE}", params={"format": "csv", "fields": ["id", "age"]}, timeout=60) as r:
        assert r.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.headers
        for chunk in r.iter_bytes():  # gzip-decoded: httpx asks for gzip, and streams are compressed too
            chunks += 1
            data += chunk
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert rows[0] == ["id", "age"] and len(rows) == len(input_frame) + 1
    assert [int(age) for _, age in rows[1:]] == input_frame["age"].tolist()
    assert chunks > 1


def test_ndjson_and_accept_header_match_json(api: str) -> None:
    params = {"race": "Other", "gender": "Female", "sort": "-age", "limit": 40, "offset": 5}
    page = httpx.get(f"{api}{PEOPLE}", params=params).json()["items"]
    ndjson = httpx.get(f"{api}{PEOPLE}", params={**params, "format": "ndjson"})
    assert ndjson.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in ndjson.text.splitlines()] == page
    by_accept = httpx.get(f"{api}{PEOPLE}", params=params, headers={"Accept": "text/csv;q=0.9, application/x-ndjson"})
    assert by_accept.text == ndjson.text
    csv_by_accept = httpx.get(f"{api}{PEOPLE}", params=params, headers={"Accept": "text/csv"})
    assert csv_by_accept.headers["content-type"].startswith("text/csv")
    assert len(csv_by_accept.text.splitlines()) == 41
    # The parameter wins over Accept; an unknown format is a 400 naming it.
    assert httpx.get(f"{api}{PEOPLE}", params={**params, "format": "json"}, headers={"Accept": "text/csv"}).json()
    bad = httpx.get(f"{api}{PEOPLE}", params={"format": "xml"})
    assert bad.status_code == 400 and bad.json()["parameter"] == "format"


# --------------------------------------------------------------------------- gzip and caching


def test_gzip_when_asked(api: str) -> None:
    url = f"{api}{PEOPLE}?limit=1000"
    plain = httpx.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    with httpx.Client() as http:
        zipped = http.get(url, headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.json() == plain.json()
        raw = http.send(http.build_request("GET", url, headers={"Accept-Encoding": "gzip"}), stream=True)
        compressed = b"".join(raw.iter_raw())
        raw.close()
    assert gzip.decompress(compressed) == plain.content
    assert len(compressed) * 5 < len(plain.content)


def test_etag_round_trip_gives_304(api: str) -> None:
    url = f"{api}{PEOPLE}?gender=Female&limit=5"
    first = httpx.get(url)
    tag = first.headers["etag"]
    assert tag.startswith('W/"') and "must-revalidate" in first.headers["cache-control"]
    again = httpx.get(url, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    assert httpx.get(url, headers={"If-None-Match": '"something-else"'}).status_code == 200
    other = httpx.get(f"{api}{PEOPLE}?gender=Male&limit=5")
    assert other.headers["etag"] != tag
    assert httpx.get(f"{api}/api/v1/stats?group_by=race").headers["etag"] != tag


def test_etag_changes_when_the_data_changes(sqlite_census_url: str, tmp_path: Path) -> None:
    database = tmp_path / "census.db"
    shutil.copy(sqlite_census_url.removeprefix("sqlite:///"), database)
    extra = tmp_path / "extra.csv"
    extra.write_text("".join(DEFAULT_SOURCE.read_text().splitlines(keepends=True)[:4]))
    with TestClient(create_app(sqlite_url(database))) as client:
        before = client.get(PEOPLE, params={"limit": 1})
        tag = before.headers["etag"]
        assert client.get(PEOPLE, params={"limit": 1}, headers={"If-None-Match": tag}).status_code == 304
        engine = make_engine(sqlite_url(database))
        upload(engine, extra, progress=False)
        engine.dispose()
        after = client.get(PEOPLE, params={"limit": 1}, headers={"If-None-Match": tag})
        assert after.status_code == 200 and after.headers["etag"] != tag
        assert after.json()["total"] == before.json()["total"] + 3


# --------------------------------------------------------------------------- metrics, docs, health


def test_prometheus_metrics(api: str) -> None:
    httpx.get(f"{api}{PEOPLE}?limit=1")
    text = httpx.get(f"{api}/metrics").text
    assert re.search(r'census_api_requests_total\{[^}]*path="/api/v1/people"[^}]*status_code="200"[^}]*\} \d', text)
    assert "census_api_request_duration_seconds_bucket" in text
    assert re.search(r'census_api_database\{backend="sqlite",database="SQLite file census.db"\} 1\.0', text)
    assert "census_api_db_connections_in_use" in text


def test_docs_ui_is_served_offline(api: str) -> None:
    page = httpx.get(f"{api}/schema/swagger")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(asset.startswith("/schema/static/") for asset in assets), assets
    assert "https://" not in page.text.replace("https://swagger.io", "")
    for asset in assets:
        response = httpx.get(f"{api}{asset}")
        assert response.status_code == 200 and len(response.content) > 500, asset


def test_health_shows_no_path(api: str, sqlite_census_url: str) -> None:
    body = httpx.get(f"{api}/health").json()
    assert body["database"] == "SQLite file census.db"
    assert str(Path(sqlite_census_url.removeprefix("sqlite:///")).parent) not in json.dumps(body)


def test_503_names_no_host_port_or_role() -> None:
    port = free_port()
    url = f"postgresql://someoperator:secret@127.0.0.1:{port}/census"  # nothing listens there
    with TestClient(create_app(url)) as client:
        for response in (client.get("/health"), client.get(PEOPLE), client.get("/api/v1/stats")):
            assert response.status_code == 503
            for secret in ("someoperator", "secret", "127.0.0.1", str(port)):
                assert secret not in response.text, (secret, response.text)
        assert "refused" in client.get("/health").json()["reason"]
        assert int(client.get(PEOPLE).headers["retry-after"]) >= 1


# --------------------------------------------------------------------------- CORS and rate limit


def test_cors_is_off_by_default_and_configurable(sqlite_census_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    origin = {"Origin": "https://dashboard.example"}
    with TestClient(create_app(sqlite_census_url)) as client:
        assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    monkeypatch.setenv("API_CORS_ORIGINS", "https://dashboard.example")
    with TestClient(create_app(sqlite_census_url)) as client:
        allowed = client.get("/health", headers=origin)
        assert allowed.headers["access-control-allow-origin"] == "https://dashboard.example"
        other = client.get("/health", headers={"Origin": "https://evil.example"})
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


def test_rate_limit_gives_429_with_retry_after(sqlite_census_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_RATE_LIMIT", "5")
    with TestClient(create_app(sqlite_census_url)) as client:
        statuses = [client.get(PEOPLE, params={"limit": 1}).status_code for _ in range(5)]
        assert statuses == [200] * 5
        limited = client.get(PEOPLE, params={"limit": 1})
        assert limited.status_code == 429
        assert limited.json()["status"] == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert client.get("/health").status_code == 200  # health is never limited


def test_rate_limit_counts_a_client_across_endpoints(sqlite_census_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One budget per client, whichever endpoints it calls (Litestar builds the
    middleware once per route; the counts must not be per route)."""
    monkeypatch.setenv("API_RATE_LIMIT", "4")
    with TestClient(create_app(sqlite_census_url)) as client:
        paths = [PEOPLE, "/api/v1/stats", "/api/v1/dimensions", f"{PEOPLE}/7"]
        answers = [client.get(path) for path in paths]
        assert [a.status_code for a in answers] == [200] * 4
        assert [a.headers["ratelimit-remaining"] for a in answers] == ["3", "2", "1", "0"]
        assert all(a.headers["ratelimit-limit"] == "4" and a.headers["ratelimit-policy"] == "4; w=60" for a in answers)
        assert 1 <= int(answers[-1].headers["ratelimit-reset"]) <= 60
        limited = client.get("/api/v1/stats", params={"group_by": "race"}, headers={"X-Request-Id": "over-4"})
        assert limited.status_code == 429 and limited.headers["ratelimit-remaining"] == "0"
        assert limited.headers["x-request-id"] == "over-4"  # a 429 is traced like any answer
        assert limited.headers["retry-after"] == limited.headers["ratelimit-reset"]
        assert client.get("/metrics").status_code == 200  # metrics are never limited
