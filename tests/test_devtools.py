"""The dev-support helpers the other tests rely on: the pandas reference filter on a
frame small enough to check by hand, and the server-lifecycle helper on a real server."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from devtools.reference import people_mask, select_by_params
from devtools.servers import ServerProcess, free_port

FRAME = pd.DataFrame(
    {
        "age": [17, 30, 45, 60, 90],
        "hours_per_week": [10, 40, 50, 40, 99],
        "workclass": ["Private", None, "State-gov", "Private", None],
        "gender": ["Female", "Male", "Female", "Male", "Female"],
    }
)


@pytest.mark.parametrize(
    ("ranges", "categories", "rows"),
    [
        ({}, {}, [0, 1, 2, 3, 4]),
        ({"age": (30, 60)}, {}, [1, 2, 3]),  # inclusive at both ends
        ({"age": (None, 45)}, {}, [0, 1, 2]),  # an open end does not limit
        ({}, {"workclass": [None]}, [1, 4]),  # None selects the missing values
        ({}, {"workclass": ["Private", None]}, [0, 1, 3, 4]),
        ({}, {"workclass": []}, [0, 1, 2, 3, 4]),  # an empty list does not filter
        ({"hours_per_week": (40, 50)}, {"gender": ["Male"], "workclass": ["Private"]}, [3]),
    ],
)
def test_reference_filter(ranges: dict, categories: dict, rows: list[int]) -> None:
    assert FRAME.index[people_mask(FRAME, ranges, categories)].tolist() == rows


def test_reference_filter_from_query_parameters() -> None:
    params = {"hours_min": 40, "age_max": "60", "workclass": ["unknown", "Private"], "limit": 5, "sort": "-age"}
    assert select_by_params(FRAME, params).index.tolist() == [1, 3]
    assert select_by_params(FRAME, {"gender": "Female", "age_min": 18}).index.tolist() == [2, 4]


def test_server_process_starts_answers_and_stops(tmp_path: Path) -> None:
    (tmp_path / "ready").write_text("yes")
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with ServerProcess(command, port, ready_path="/ready", cwd=tmp_path, start_timeout_s=30) as server:
        with urllib.request.urlopen(f"{server.base_url}/ready", timeout=10) as response:
            assert response.read() == b"yes"
        process = server.process
    assert process is not None and process.poll() is not None
    assert "GET /ready" in server.output  # the server's log is kept


def test_server_process_that_exits_says_why() -> None:
    command = [sys.executable, "-c", "import sys; print('no database here'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match=r"(?s)exited with status 3.*no database here"):
        ServerProcess(command, free_port(), start_timeout_s=30).start()
