"""The filter API against real databases built by the real loader.

Every expected number is computed independently from the input file with pandas
(`input_frame`), never through the query layer the API itself uses.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from litestar.testing import TestClient

from api.app import create_app
from devtools import reference
from devtools.servers import ServerProcess, free_port
from warehouse.domain import CATEGORIES

ROOT = Path(__file__).resolve().parent.parent
PEOPLE = "/api/v1/people"
STATS = "/api/v1/stats"
# Range parameter -> input column.
RANGE_COLUMNS = reference.RANGE_PARAMETERS
AGE_BINS = [0, 24, 34, 44, 54, 64, 1000]
AGE_LABELS = ["17-24", "25-34", "35-44", "45-54", "55-64", "65+"]

# Filters as query parameters (lists repeat), each checked against pandas.
FILTERS: list[dict[str, Any]] = [
    {},
    {"gender": "Female", "age_min": 30},
    {"age_min": 25, "age_max": 35, "occupation": ["Sales", "Tech-support"]},
    {"workclass": "unknown"},
    {"native_country": ["unknown", "Mexico"], "income": ">50K"},
    {"education_num_min": 13, "hours_min": 40, "hours_max": 60, "race": "White"},
    {"capital_gain_min": 1, "marital_status": "Divorced", "relationship": "Unmarried"},
    {"capital_loss_min": 1000, "fnlwgt_max": 200000, "education": ["Bachelors", "Masters"]},
    {"age_min": 90, "age_max": 90, "gender": "Male", "race": "Other"},
]


select = reference.select_by_params  # the rows a filter selects, by pandas alone


def _filter_id(params: dict[str, Any]) -> str:
    return "&".join(f"{k}={v}" for k, v in params.items()) or "everyone"


def _none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def expected_groups(frame: pd.DataFrame, group_by: list[str]) -> dict[tuple[Any, ...], dict[str, float]]:
    frame = frame.assign(
        age_band=pd.cut(frame["age"], AGE_BINS, labels=AGE_LABELS).astype(str),
        high=(frame["income"] == ">50K").astype(float),
    )
    if not group_by:
        grouped = {(): frame}
    else:
        grouped = {
            (key if isinstance(key, tuple) else (key,)): part
            for key, part in frame.groupby(group_by, dropna=False, observed=True)
        }
    return {
        tuple(_none(k) for k in key): {
            "people": len(part),
            "share_over_50k": part["high"].mean(),
            "population": int(part["fnlwgt"].sum()),
            "mean_age": part["age"].mean(),
            "mean_hours": part["hours_per_week"].mean(),
            "mean_capital_gain": part["capital_gain"].mean(),
        }
        for key, part in grouped.items()
    }


def check_stats(client: TestClient, frame: pd.DataFrame, params: dict[str, Any], group_by: list[str]) -> None:
    response = client.get(STATS, params={**params, "group_by": group_by})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["group_by"] == group_by
    got = {tuple(group[name] for name in group_by): group for group in body["groups"]}
    expected = expected_groups(select(frame, params), group_by)
    assert set(got) == set(expected)
    for key, measures in expected.items():
        for name, value in measures.items():
            assert got[key][name] == pytest.approx(value, rel=1e-9), (key, name)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def client(sqlite_census_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(sqlite_census_url)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def pg_client(postgres_census_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(postgres_census_url)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def live_api(sqlite_census_url: str) -> Iterator[str]:
    """`python -m api` as a real uvicorn server on a free port (as deployed)."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": sqlite_census_url,
        "API_PORT": str(port),
        "GIT_COMMIT": "live-test",
        "API_ACCESS_LOG": "0",
    }
    command = [sys.executable, "-m", "api", "--log-level", "warning"]
    with ServerProcess(command, port, ready_path="/health", env=env, start_timeout_s=30) as api:
        yield api.base_url


# --------------------------------------------------------------------------- people


@pytest.mark.parametrize("params", FILTERS, ids=_filter_id)
def test_total_matches_pandas(client: TestClient, input_frame: pd.DataFrame, params: dict[str, Any]) -> None:
    response = client.get(PEOPLE, params={**params, "limit": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = select(input_frame, params)
    assert body["total"] == len(expected)
    assert len(body["items"]) == min(5, len(expected))
    assert body["limit"] == 5 and body["offset"] == 0


def test_page_rows_match_the_input(client: TestClient, input_frame: pd.DataFrame) -> None:
    """People are loaded in file order, so person id N is the input's row N."""
    params = {"gender": "Female", "age_min": 30}
    body = client.get(PEOPLE, params={**params, "limit": 50}).json()
    expected = select(input_frame, params).head(50)
    assert [item["id"] for item in body["items"]] == [index + 1 for index in expected.index]
    for item, (_, row) in zip(body["items"], expected.iterrows(), strict=True):
        for column in input_frame.columns:
            assert item[column] == _none(row[column]), column


@pytest.mark.parametrize(
    ("params", "sort"),
    [
        ({"race": "Amer-Indian-Eskimo"}, None),
        ({"race": "Other", "gender": "Female"}, "-age"),
        ({"native_country": "unknown"}, "occupation"),
    ],
)
def test_walking_every_page_has_no_gaps_or_repeats(
    client: TestClient, input_frame: pd.DataFrame, params: dict[str, Any], sort: str | None
) -> None:
    query: dict[str, Any] = {**params, "limit": 37, **({"sort": sort} if sort else {})}
    url: str | None = client.get(PEOPLE, params=query).request.url.raw_path.decode()
    seen: list[int] = []
    pages = 0
    total = None
    while url:
        body = client.get(url).json()
        total = body["total"] if total is None else total
        assert body["total"] == total
        seen += [item["id"] for item in body["items"]]
        url = body["next"]
        pages += 1
        assert pages < 1000
    expected = select(input_frame, params)
    assert len(seen) == len(set(seen)) == total == len(expected)
    assert set(seen) == {index + 1 for index in expected.index}
    assert pages == math.ceil(total / 37)


def test_sort_and_fields(client: TestClient, input_frame: pd.DataFrame) -> None:
    body = client.get(PEOPLE, params={"fields": ["id", "age", "gender"], "sort": "-age", "limit": 200}).json()
    assert all(set(item) == {"id", "age", "gender"} for item in body["items"])
    ages = [item["age"] for item in body["items"]]
    assert ages == sorted(ages, reverse=True) and ages[0] == input_frame["age"].max()
    # Ties are broken by id, so the order is stable.
    same_age = [item["id"] for item in body["items"] if item["age"] == ages[0]]
    assert same_age == sorted(same_age)
    ascending = client.get(PEOPLE, params={"sort": "hours_per_week", "fields": "hours_per_week", "limit": 3}).json()
    assert [item["hours_per_week"] for item in ascending["items"]] == [input_frame["hours_per_week"].min()] * 3


def test_next_link_and_last_page(client: TestClient, input_frame: pd.DataFrame) -> None:
    total = len(input_frame)
    first = client.get(PEOPLE, params={"limit": 1000, "gender": "Male"}).json()
    assert first["next"].startswith(f"{PEOPLE}?") and "offset=1000" in first["next"] and "gender=Male" in first["next"]
    last = client.get(PEOPLE, params={"limit": 10, "offset": total - 3}).json()
    assert len(last["items"]) == 3 and last["next"] is None
    beyond = client.get(PEOPLE, params={"offset": total + 10}).json()
    assert beyond["items"] == [] and beyond["next"] is None and beyond["total"] == total


def test_person_by_id(client: TestClient, input_frame: pd.DataFrame) -> None:
    for person_id in (1, 15, len(input_frame)):
        response = client.get(f"{PEOPLE}/{person_id}")
        assert response.status_code == 200
        body = response.json()
        row = input_frame.iloc[person_id - 1]
        assert body["id"] == person_id
        assert {column: body[column] for column in input_frame.columns} == {
            column: _none(row[column].item() if hasattr(row[column], "item") else row[column])
            for column in input_frame.columns
        }


# --------------------------------------------------------------------------- stats and dimensions


@pytest.mark.parametrize(
    ("params", "group_by"),
    [
        ({}, []),
        ({}, ["gender"]),
        ({"age_min": 30}, ["workclass"]),
        ({}, ["race", "age_band"]),
        ({"gender": "Female", "hours_min": 20}, ["education", "income"]),
        ({"native_country": ["unknown", "India"]}, ["age_band"]),
        ({"age_min": 90, "age_max": 90, "race": "Other"}, ["occupation", "gender"]),
    ],
    ids=lambda value: _filter_id(value) if isinstance(value, dict) else ",".join(value) or "no-group",
)
def test_stats_match_pandas(
    client: TestClient, input_frame: pd.DataFrame, params: dict[str, Any], group_by: list[str]
) -> None:
    check_stats(client, input_frame, params, group_by)


def test_stats_measures_and_empty_filter(client: TestClient, input_frame: pd.DataFrame) -> None:
    body = client.get(STATS, params={"group_by": "gender", "measures": ["people", "mean_age"]}).json()
    assert body["measures"] == ["people", "mean_age"]
    # Only the measures asked for (with their intervals: tests/test_api_intervals.py).
    assert all({"gender", "people", "mean_age"} <= set(group) for group in body["groups"])
    assert not any(k.startswith(("share", "population", "mean_hours")) for group in body["groups"] for k in group)
    plain = client.get(STATS, params={"group_by": "gender", "measures": ["people", "mean_age"], "intervals": "false"})
    assert all(set(group) == {"gender", "people", "mean_age", "n"} for group in plain.json()["groups"])
    # Nobody matches: no groups (grouped) or one group of nobody (ungrouped).
    nobody_grouped = {"age_min": 90, "age_max": 90, "education": "Preschool", "group_by": "race"}
    assert select(input_frame, nobody_grouped).empty
    assert client.get(STATS, params=nobody_grouped).json()["groups"] == []
    nobody = client.get(STATS, params={"age_min": 100}).json()["groups"]
    assert nobody[0]["people"] == 0 and nobody[0]["mean_age"] is None
    # A repeated group_by value counts once.
    assert client.get(STATS, params={"group_by": ["gender", "gender"]}).json()["group_by"] == ["gender"]


def test_dimensions_match_pandas(client: TestClient, input_frame: pd.DataFrame) -> None:
    body = client.get("/api/v1/dimensions").json()
    assert [d["name"] for d in body["dimensions"]] == list(CATEGORIES)
    for dimension in body["dimensions"]:
        name = dimension["name"]
        counts = {v["param"]: v["people"] for v in dimension["values"]}
        assert list(counts) == [*CATEGORIES[name], "unknown"]
        expected = input_frame[name].value_counts()
        for value in CATEGORIES[name]:
            assert counts[value] == expected.get(value, 0), (name, value)
        assert counts["unknown"] == int(input_frame[name].isna().sum())
        missing = [v for v in dimension["values"] if v["param"] == "unknown"]
        assert missing[0]["value"] is None


def test_dimension_with_filter(client: TestClient, input_frame: pd.DataFrame) -> None:
    params = {"gender": "Female", "age_min": 40}
    body = client.get("/api/v1/dimensions/occupation", params=params).json()
    selected = select(input_frame, params)
    counts = {v["param"]: v["people"] for v in body["values"]}
    assert counts["unknown"] == int(selected["occupation"].isna().sum())
    assert counts["Sales"] == int((selected["occupation"] == "Sales").sum())
    assert sum(counts.values()) == len(selected)


# --------------------------------------------------------------------------- errors


def assert_error(response: httpx.Response, status: int, parameter: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == status and body["detail"]
    assert body["parameter"] == parameter
    return body


def test_unknown_category_value_lists_the_allowed_ones(client: TestClient) -> None:
    body = assert_error(client.get(PEOPLE, params={"gender": "Robot"}), 400, "gender")
    assert body["allowed"] == ["Female", "Male", "unknown"]
    assert "Robot" in body["detail"]
    body = assert_error(client.get(STATS, params={"native_country": ["Mexico", "Atlantis"]}), 400, "native_country")
    assert "Mexico" in body["allowed"] and "unknown" in body["allowed"]


def test_a_reversed_range_matches_nobody(client: TestClient, input_frame: pd.DataFrame) -> None:
    """min above max is a valid request by the OpenAPI (no schema states a rule across
    two parameters), so it is answered: the empty interval selects no one."""
    page = client.get(PEOPLE, params={"age_min": 50, "age_max": 40, "gender": "Female"})
    assert page.status_code == 200, page.text
    assert page.json()["total"] == 0 and page.json()["items"] == []
    csv_text = client.get(PEOPLE, params={"education_num_min": 12, "education_num_max": 3, "format": "csv"}).text
    assert len(csv_text.strip().splitlines()) == 1  # the header only
    stats = client.get(STATS, params={"hours_min": 60, "hours_max": 20}).json()
    assert [group["people"] for group in stats["groups"]] == [0]
    assert client.get(STATS, params={"age_min": 80, "age_max": 20, "group_by": "race"}).json()["groups"] == []
    race = client.get("/api/v1/dimensions/race", params={"fnlwgt_min": 9, "fnlwgt_max": 1}).json()
    assert {value["people"] for value in race["values"]} == {0}
    # One bound equal to the other is a one-value range, not an empty one.
    equal = client.get(PEOPLE, params={"age_min": 40, "age_max": 40, "limit": 1}).json()
    assert equal["total"] == int((input_frame["age"] == 40).sum()) > 0
    # The other rules still hold next to a reversed range.
    assert_error(client.get(PEOPLE, params={"age_min": 50, "age_max": 40, "gender": "Robot"}), 400, "gender")


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        (PEOPLE, {"limit": 0}, "limit"),
        (PEOPLE, {"limit": 1001}, "limit"),
        (PEOPLE, {"limit": "ten"}, "limit"),
        (PEOPLE, {"offset": -1}, "offset"),
        (PEOPLE, {"offset": 10**12}, "offset"),
        (PEOPLE, {"age_min": "old"}, "age_min"),
        (PEOPLE, {"age_max": 500}, "age_max"),
        (PEOPLE, {"capital_gain_min": -1}, "capital_gain_min"),
        (PEOPLE, {"sort": "salary"}, "sort"),
        (PEOPLE, {"sort": "-password"}, "sort"),
        (PEOPLE, {"fields": ["age", "ssn"]}, "fields"),
        (PEOPLE, {"income": ">100K"}, "income"),
        (PEOPLE, {"genderr": "Female"}, "genderr"),
        (PEOPLE, {"age_min": "1; DROP TABLE person"}, "age_min"),
        (STATS, {"group_by": "fnlwgt"}, "group_by"),
        (STATS, {"group_by": ["gender", "race", "income"]}, "group_by"),
        (STATS, {"measures": "median_income"}, "measures"),
        (STATS, {"limit": 5}, "limit"),
        ("/api/v1/dimensions", {"gender": "Female"}, "gender"),
        (f"{PEOPLE}/0", {}, "person_id"),
        (f"{PEOPLE}/99999999999", {}, "person_id"),
    ],
)
def test_bad_parameters_are_400_naming_them(
    client: TestClient, path: str, params: dict[str, Any], parameter: str
) -> None:
    body = assert_error(client.get(path, params=params), 400, parameter)
    if path != "/api/v1/dimensions":  # takes no query parameters at all
        assert body["allowed"], body


def test_not_found(client: TestClient) -> None:
    assert_error(client.get(f"{PEOPLE}/999999"), 404, "person_id")
    body = assert_error(client.get("/api/v1/dimensions/salary"), 404, "name")
    assert body["allowed"] == list(CATEGORIES)
    assert client.get("/api/v1/nothing").status_code == 404


HEAD_PATHS = (
    "/health",
    "/api/v1/health",
    f"{PEOPLE}?limit=3&gender=Female",
    f"{PEOPLE}/1",
    f"{PEOPLE}/999999",
    f"{PEOPLE}?format=csv&limit=5",
    f"{PEOPLE}?age_min=500",
    STATS,
    "/api/v1/dimensions",
    "/api/v1/dimensions/race",
    "/api/v1/dimensions/salary",
    "/api/v1/nothing",
    "/schema/openapi.json",
)
# Differ between two answers by design (a new id, the answering time), and
# framing: uvicorn chunks a streamed GET body but sends no chunks for HEAD
# (RFC 9110 9.3.2 lets HEAD omit fields only known while sending the content).
VARYING_HEADERS = {"x-request-id", "date", "transfer-encoding"}


def assert_head_is_get(get: httpx.Response, head: httpx.Response) -> None:
    assert head.status_code == get.status_code, (head.request.url, head.status_code, get.status_code)
    assert head.content == b""
    got = {k: v for k, v in get.headers.items() if k not in VARYING_HEADERS}
    headed = {k: v for k, v in head.headers.items() if k not in VARYING_HEADERS}
    assert headed == got, head.request.url


@pytest.mark.parametrize("path", HEAD_PATHS)
def test_head_is_get_without_the_body(client: TestClient, path: str) -> None:
    get = client.get(path)
    assert get.content  # so an empty HEAD body is the HEAD's doing
    assert_head_is_get(get, client.head(path))


def test_head_revalidates_like_get(client: TestClient) -> None:
    tag = client.get(STATS).headers["etag"]
    head = client.head(STATS, headers={"If-None-Match": tag})
    assert head.status_code == 304 and head.headers["etag"] == tag and head.content == b""


def test_read_only(client: TestClient) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = client.request(method, PEOPLE)
        assert response.status_code == 405
        assert "GET" in response.headers["allow"]
        assert response.json()["status"] == 405
    assert client.get(PEOPLE, params={"limit": 1}).json()["total"] > 0


# --------------------------------------------------------------------------- health


def test_health(sqlite_census_url: str, input_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_COMMIT", "abc1234")
    with TestClient(create_app(sqlite_census_url)) as test_client:
        for path in ("/health", "/api/v1/health"):
            response = test_client.get(path)
            assert response.status_code == 200
            body = response.json()
            assert body["status"] == "ok" and body["commit"] == "abc1234" and body["backend"] == "sqlite"
            assert body["people"] == len(input_frame) and body["database"].startswith("SQLite file")
        # The start-up warm-up builds the snapshot in the background; health says when it is in use.
        deadline = time.monotonic() + 30
        while not test_client.get("/health").json()["in_memory"]:
            assert time.monotonic() < deadline, "the columnar snapshot was never built"
            time.sleep(0.05)


def test_health_says_when_aggregates_run_in_sql(sqlite_census_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNAR_MAX_ROWS", "0")
    with TestClient(create_app(sqlite_census_url)) as test_client:
        body = test_client.get("/health").json()
        assert body["status"] == "ok" and body["in_memory"] is False


def test_health_when_postgres_is_gone() -> None:
    url = f"postgresql://census:secret@127.0.0.1:{free_port()}/census"  # nothing listens there
    with TestClient(create_app(url)) as test_client:
        response = test_client.get("/health")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable" and "refused" in body["reason"].lower()
        assert "secret" not in response.text
        assert_error(test_client.get(PEOPLE), 503, None)
        assert_error(test_client.get(STATS), 503, None)


def test_health_when_the_sqlite_file_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "census.db"
    with TestClient(create_app(f"sqlite:///{missing}")) as test_client:
        response = test_client.get("/api/v1/health")
        assert response.status_code == 503 and response.json()["reason"]
        assert_error(test_client.get(f"{PEOPLE}/1"), 503, None)
    assert not missing.parent.exists()  # the read-only API created nothing


# --------------------------------------------------------------------------- OpenAPI


def test_openapi_documents_every_parameter(client: TestClient) -> None:
    schema = client.get("/schema/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    people = {p["name"]: p for p in schema["paths"][PEOPLE]["get"]["parameters"]}
    expected = {
        *(f"{name}_{end}" for name in RANGE_COLUMNS for end in ("min", "max")),
        *CATEGORIES,
        "fields",
        "sort",
        "limit",
        "offset",
        "format",
    }
    assert set(people) == expected
    assert people["limit"]["schema"]["minimum"] == 1 and people["limit"]["schema"]["maximum"] == 1000
    assert people["age_min"]["schema"]["minimum"] == 16

    def enum_of(parameter: dict[str, Any]) -> list[str]:
        text = str(parameter["schema"])
        ref = text.split("#/components/schemas/")[1].split("'")[0]
        return schema["components"]["schemas"][ref]["enum"]  # type: ignore[no-any-return]

    assert enum_of(people["gender"]) == ["Female", "Male", "unknown"]
    assert enum_of(people["income"]) == ["<=50K", ">50K", "unknown"]
    assert "-age" in enum_of(people["sort"])
    stats = {p["name"]: p for p in schema["paths"][STATS]["get"]["parameters"]}
    assert "age_band" in enum_of(stats["group_by"]) and "gender" in enum_of(stats["group_by"])
    for path, item in schema["paths"].items():
        assert set(item) == {"get"}, path
        assert "503" in item["get"]["responses"], path


def test_openapi_states_every_bound_and_the_cross_field_rule(client: TestClient) -> None:
    schema = client.get("/schema/openapi.json").json()
    for path in (PEOPLE, STATS):
        parameters = {p["name"]: p for p in schema["paths"][path]["get"]["parameters"]}
        for name in ("capital_gain_min", "capital_gain_max", "capital_loss_min", "capital_loss_max"):
            assert parameters[name]["schema"]["minimum"] == 0, (path, name)
            assert parameters[name]["schema"]["maximum"] == 99_999, (path, name)
        assert "`age_max`" in parameters["age_min"]["description"]
        assert "`hours_min`" in parameters["hours_max"]["description"]
        assert (
            "fnlwgt" in parameters["fnlwgt_min"]["description"]
            and "stands for" in parameters["fnlwgt_min"]["description"]
        )


@pytest.mark.parametrize(
    ("path", "query", "parameter"),
    [
        (PEOPLE, "age_min=30&age_min=40", "age_min"),
        (STATS, "hours_max=40&hours_max=50", "hours_max"),
        (PEOPLE, "limit=5&limit=6", "limit"),
        (PEOPLE, "offset=0&offset=10", "offset"),
        (PEOPLE, "age_min=30.0", "age_min"),
        (PEOPLE, "age_min=3e1", "age_min"),
        (STATS, "capital_gain_min=1e3", "capital_gain_min"),
        (PEOPLE, "limit=1e1", "limit"),
        (PEOPLE, "offset=1.0", "offset"),
    ],
)
def test_repeated_and_float_looking_whole_numbers_are_refused(
    client: TestClient, path: str, query: str, parameter: str
) -> None:
    body = assert_error(client.get(f"{path}?{query}"), 400, parameter)
    assert parameter in body["detail"]


def test_a_repeated_category_counts_once(client: TestClient) -> None:
    once = client.get(STATS, params={"gender": "Female"}).json()
    twice = client.get(f"{STATS}?gender=Female&gender=Female").json()
    assert once["groups"] == twice["groups"]


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
@pytest.mark.parametrize("params", FILTERS[:6], ids=_filter_id)
def test_postgres_totals(pg_client: TestClient, input_frame: pd.DataFrame, params: dict[str, Any]) -> None:
    body = pg_client.get(PEOPLE, params={**params, "limit": 3}).json()
    assert body["total"] == len(select(input_frame, params))


@pytest.mark.postgres
def test_postgres_pages_stats_and_dimensions(
    pg_client: TestClient, client: TestClient, input_frame: pd.DataFrame
) -> None:
    for query in (
        {"gender": "Female", "age_min": 30, "limit": 100},
        {"sort": "-occupation", "offset": 500, "limit": 50, "native_country": ["unknown", "Canada"]},
        {"sort": "age", "fields": ["id", "age", "workclass"], "limit": 25, "workclass": "unknown"},
    ):
        assert pg_client.get(PEOPLE, params=query).json() == client.get(PEOPLE, params=query).json()
    check_stats(pg_client, input_frame, {"age_min": 30}, ["race", "age_band"])
    check_stats(pg_client, input_frame, {}, ["workclass"])
    assert pg_client.get(f"{PEOPLE}/42").json() == client.get(f"{PEOPLE}/42").json()
    assert_error(pg_client.get(f"{PEOPLE}/999999"), 404, "person_id")
    assert pg_client.get("/api/v1/dimensions").json() == client.get("/api/v1/dimensions").json()
    health = pg_client.get("/health").json()
    assert health["backend"] == "postgresql" and health["people"] == len(input_frame)


# --------------------------------------------------------------------------- live server and schemathesis


def test_live_server_answers_head_as_get(live_api: str) -> None:
    """uvicorn is told the request is a HEAD: it must not expect (or send) the GET's body."""
    with httpx.Client(base_url=live_api) as http:
        # /health's body says whether the analytic copy is ready ("in_memory"); it is built
        # after start-up, so wait for it: a GET and a HEAD either side of that differ by design.
        deadline = time.monotonic() + 60
        while http.get("/health").json().get("in_memory") is False and time.monotonic() < deadline:
            time.sleep(0.2)
        for path in HEAD_PATHS:
            assert_head_is_get(http.get(path), http.head(path))
        gzipped = {"Accept-Encoding": "gzip"}
        page = f"{PEOPLE}?limit=200"
        get, head = http.get(page, headers=gzipped), http.head(page, headers=gzipped)
        assert head.headers["content-encoding"] == "gzip"
        assert_head_is_get(get, head)
        # The connection is still usable after HEADs (no body left in the stream).
        assert http.get("/health").json()["status"] == "ok"


def test_python_m_api_serves(live_api: str) -> None:
    body = httpx.get(f"{live_api}/api/v1/health").json()
    assert body["status"] == "ok" and body["commit"] == "live-test"
    page = httpx.get(f"{live_api}{PEOPLE}", params={"gender": "Female", "age_min": 30, "limit": 100}).json()
    assert len(page["items"]) == 100 and page["total"] > 100


SCHEMATHESIS_CONFIG = """
# Every schema-valid request is accepted: no 400 (nor 404) for positive data.
[checks.positive_data_acceptance]
expected-statuses = ["2xx"]

# Except a person id nobody has (most of 1..2**31-1): a documented 404.
[[operations]]
include-path = "/api/v1/people/{person_id}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "404"]
"""


@pytest.mark.slow
def test_schemathesis_finds_no_failures(live_api: str, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{live_api}/schema/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "25",
        "--seed",
        "1994",
        "--workers",
        "2",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout, result.stdout[-3000:]
