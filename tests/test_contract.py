"""The census contract is the one place attributes and measures are declared.

- It agrees with the schema (the people view's columns, the dimensions, the ranges).
- A filter's URL form follows the API's rules in both directions (the explorer
  parses links with them): repeated or float-looking whole numbers and out-of-range
  bounds are refused, a repeated category counts once, every range attribute
  (capital_loss and fnlwgt included) survives a round trip through the explorer.
- Adding a toy measure to the contract's declaration, and nowhere else, makes it
  appear in the API (answers and OpenAPI), the explorer's measure list and its URL form.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from explorer.filters import RANGE_FILTERS, FilterPanel
from warehouse import contract
from warehouse.domain import CATEGORIES, RANGES
from warehouse.models import DIMENSIONS, people
from warehouse.query import PeopleFilter, QueryError

ROOT = Path(__file__).resolve().parents[1]


def test_the_contract_agrees_with_the_schema() -> None:
    assert list(contract.ATTRIBUTES) == [column.name for column in people.columns]
    assert set(contract.CATEGORY_COLUMNS) == set(DIMENSIONS) == set(CATEGORIES)
    assert set(contract.RANGE_COLUMNS) == set(RANGES)
    for attribute in contract.ATTRIBUTES.values():
        assert attribute.title and len(attribute.description) > 20, attribute.name
    for measure in contract.MEASURES_DECLARED:
        assert set(measure.statistics) <= set(contract.STATISTICS), measure.name
        assert measure.finish({s: 0 for s in contract.STATISTICS}) in (None, 0), measure.name  # an empty group


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"age_min": ["30", "40"]}, "age_min"),
        ({"age_min": ["30.0"]}, "age_min"),
        ({"hours_max": ["3e1"]}, "hours_max"),
        ({"fnlwgt_min": ["0x10"]}, "fnlwgt_min"),
        ({"capital_loss_max": ["100000"]}, "capital_loss_max"),
        ({"age_min": ["50"], "age_max": ["40"]}, "age_min"),
        ({"gender": ["Robot"]}, "gender"),
    ],
)
def test_the_url_form_refuses_what_the_api_refuses(params: dict[str, list[str]], parameter: str) -> None:
    with pytest.raises(QueryError) as caught:
        PeopleFilter.from_params(params)
    assert caught.value.parameter == parameter


def test_every_range_attribute_round_trips_through_the_explorer() -> None:
    link = {
        "capital_loss_min": ["1000"],
        "fnlwgt_max": ["200000"],
        "age_min": ["30"],
        "gender": ["Female", "Female"],
        "workclass": ["unknown"],
    }
    parsed = PeopleFilter.from_params(link)
    assert parsed.categories["gender"] == ("Female",)  # a repeated value counts once
    assert {"capital_loss", "fnlwgt"} <= set(RANGE_FILTERS)
    panel = FilterPanel()
    panel.set_params(link)
    assert panel.people_filter == parsed
    assert panel.to_params() == {
        "age_min": ["30"],
        "capital_loss_min": ["1000"],
        "fnlwgt_max": ["200000"],
        "gender": ["Female"],
        "workclass": ["unknown"],
    }


TOY = """
    Measure(
        "toy_mean_weight",
        "Toy: mean census weight",
        "A measure declared only here, for the contract test.",
        ("n", "sum_fnlwgt"),
        _ratio("sum_fnlwgt"),
        float,
        additive=False,
    ),
"""
ANCHOR = "MEASURES_DECLARED: Final[tuple[Measure, ...]] = ("

CHECK = """
import importlib.util, json, sys
from pathlib import Path

source = Path("warehouse/contract.py").read_text(encoding="utf-8")
assert source.count(ANCHOR) == 1
import warehouse
spec = importlib.util.spec_from_loader("warehouse.contract", loader=None)
module = importlib.util.module_from_spec(spec)
module.__file__ = "warehouse/contract.py"
sys.modules["warehouse.contract"] = module
exec(compile(source.replace(ANCHOR, ANCHOR + TOY), "warehouse/contract.py", "exec"), module.__dict__)

from litestar.testing import TestClient
from api.app import create_app
from explorer.app import ExplorerApp
from explorer.store import DataStore
from explorer.visualize import ChartSpec, VisualizeView

found = {}
with TestClient(create_app(URL)) as client:
    stats = client.get("/api/v1/stats", params={"measures": "toy_mean_weight", "group_by": "gender"})
    found["api_status"] = stats.status_code
    found["api_groups"] = stats.json()["groups"]
    schema = client.get("/schema/openapi.json").json()
    found["openapi_measure_enum"] = "toy_mean_weight" in schema["components"]["schemas"]["Measure"]["enum"]
    found["openapi_group_field"] = "toy_mean_weight" in schema["components"]["schemas"]["Group"]["properties"]
found["explorer_measures"] = list(VisualizeView.param.measure.objects.values())
store = DataStore(URL)
app = ExplorerApp(store, {"tab": ["visualize"], "chart": ["bar"], "x": ["race"], "measure": ["toy_mean_weight"]})
found["explorer_from_url"] = app.visualize.measure
found["url_form"] = app.url_params()["measure"]
found["chart_params"] = ChartSpec(measure="toy_mean_weight").to_params()["measure"]
print("RESULT " + json.dumps(found))
"""


@pytest.mark.slow
def test_a_measure_declared_once_appears_everywhere(sqlite_census_url: str, input_frame: pd.DataFrame) -> None:
    script = f"ANCHOR = {ANCHOR!r}\nTOY = {TOY!r}\nURL = {sqlite_census_url!r}\n" + CHECK
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    found = json.loads(line.removeprefix("RESULT "))
    assert found["api_status"] == 200
    expected = input_frame.groupby("gender")["fnlwgt"].mean()
    got = {group["gender"]: group["toy_mean_weight"] for group in found["api_groups"]}
    assert got == pytest.approx(expected.to_dict(), rel=1e-9)
    assert found["openapi_measure_enum"] and found["openapi_group_field"]
    assert "toy_mean_weight" in found["explorer_measures"]
    assert found["explorer_from_url"] == "toy_mean_weight"
    assert found["url_form"] == ["toy_mean_weight"] == found["chart_params"]
    # and nothing of it remains in the real contract
    assert "toy_mean_weight" not in contract.MEASURES
