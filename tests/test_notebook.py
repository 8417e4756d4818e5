"""notebooks/insights.ipynb: it runs top to bottom on a freshly loaded database,
offline and in under two minutes, and writes exactly the committed insights.json;
each insight's headline number is recomputed here from the input file with pandas
(the `input_frame` fixture), independently of the warehouse and its query layer."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from notebooks import insights_lib as lib

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "insights.ipynb"
COMMITTED = ROOT / "insights.json"
TIME_LIMIT_S = 120
# Any attempt to reach the network through a proxy-aware client fails fast.
OFFLINE_PROXY = "http://127.0.0.1:9"


def pct(value: float, digits: int = 1) -> str:
    return f"{value * 100:.{digits}f}%"


def num(value: float) -> str:
    return f"{int(round(value)):,}"


@pytest.fixture(scope="module")
def executed(sqlite_census_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The notebook executed by nbclient against a database built by the real loader,
    writing insights.json to a temporary path."""
    out = tmp_path_factory.mktemp("insights") / "insights.json"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=sqlite_census_url,
        INSIGHTS_PATH=str(out),
        # The kernelspec says "python": make it this interpreter (the project's venv).
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
        HTTP_PROXY=OFFLINE_PROXY,
        HTTPS_PROXY=OFFLINE_PROXY,
        http_proxy=OFFLINE_PROXY,
        https_proxy=OFFLINE_PROXY,
        NO_PROXY="localhost,127.0.0.1",
        no_proxy="localhost,127.0.0.1",
    )
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert notebook.metadata.kernelspec.name == "python3"
    client = NotebookClient(
        notebook,
        timeout=TIME_LIMIT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    started = time.perf_counter()
    client.execute(env=env)
    elapsed = time.perf_counter() - started
    return {"notebook": notebook, "written": out, "elapsed": elapsed}


# --------------------------------------------------------------------------- execution


@pytest.mark.slow
def test_notebook_writes_the_committed_insights(executed: dict) -> None:
    assert executed["written"].read_bytes() == COMMITTED.read_bytes()


@pytest.mark.slow
def test_notebook_runs_in_under_two_minutes(executed: dict) -> None:
    assert executed["elapsed"] < TIME_LIMIT_S, f"took {executed['elapsed']:.1f} s"


@pytest.mark.slow
def test_every_cell_ran_without_errors(executed: dict) -> None:
    for cell in executed["notebook"].cells:
        if cell.cell_type == "code":
            assert cell.execution_count is not None
            assert not [o for o in cell.outputs if o.output_type == "error"]


@pytest.mark.slow
def test_saved_notebook_matches_a_fresh_run(executed: dict) -> None:
    """The committed notebook is saved with outputs, and its text is what a fresh run renders."""

    def markdown_outputs(notebook: nbformat.NotebookNode) -> list[str]:
        return [
            output["data"]["text/markdown"]
            for cell in notebook.cells
            if cell.cell_type == "code"
            for output in cell.outputs
            if "text/markdown" in output.get("data", {})
        ]

    saved = nbformat.read(NOTEBOOK, as_version=4)
    fresh = markdown_outputs(executed["notebook"])
    assert len(fresh) >= 15
    # The first output names the database file, which differs; the results must not.
    assert markdown_outputs(saved)[1:] == fresh[1:]


# --------------------------------------------------------------------------- the notebook's text


def test_prose_has_no_typed_in_results() -> None:
    """Numbers in the text are rendered from variables: written markdown cells hold no
    digits except the survey year, the 50K label and section numbers."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        text = re.sub(r"1994|50K|(?i:insight) \d|## 0\.", "", cell.source)
        assert not re.search(r"\d", text), f"typed-in number in: {cell.source[:80]!r}"


def test_insights_json_shape() -> None:
    text = COMMITTED.read_text(encoding="utf-8")
    insights = json.loads(text)
    assert len(insights) == 6
    for question, answer in insights.items():
        assert question.endswith("?")
        assert 1 <= len(re.findall(r"[.!?](?:\s|$)", answer)) <= 2, answer
        assert re.search(r"\d", answer)
    assert text == lib.render_insights(insights)  # deterministic form, trailing newline


def test_the_notebook_uses_the_explorer_filter_panel() -> None:
    sources = "\n".join(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code")
    assert "FilterPanel(" in sources and "pn.bind(" in sources
    assert ".hvplot." in sources


# --------------------------------------------------------------------------- headline numbers, from the input file


@pytest.fixture(scope="module")
def answers() -> list[str]:
    return list(json.loads(COMMITTED.read_text(encoding="utf-8")).values())


@pytest.fixture(scope="module")
def frame(input_frame: pd.DataFrame) -> pd.DataFrame:
    return input_frame.assign(high=input_frame["income"].eq(">50K"))


def test_insight_1_gender_gap_vanishes_among_married(frame: pd.DataFrame, answers: list[str]) -> None:
    answer = answers[0]
    by_gender = frame.groupby("gender")["high"].agg(["mean", "size"])
    married = frame[frame["marital_status"] == "Married-civ-spouse"].groupby("gender")["high"].agg(["mean", "size"])
    for gender in ("Female", "Male"):
        assert f"{pct(by_gender.loc[gender, 'mean'])} of {num(by_gender.loc[gender, 'size'])}" in answer
        assert f"{pct(married.loc[gender, 'mean'])} of {num(married.loc[gender, 'size'])}" in answer
    # Headline: married women are at least as likely as married men to be above 50K.
    assert married.loc["Female", "mean"] >= married.loc["Male", "mean"]
    assert by_gender.loc["Male", "mean"] - by_gender.loc["Female", "mean"] > 0.15
    rates = frame.groupby(["gender", "marital_status"])["high"].mean()
    men_mix = frame[frame["gender"] == "Male"]["marital_status"].value_counts(normalize=True)
    standardized = (rates["Female"] * men_mix).sum()
    assert f"women's share would be {pct(standardized)}" in answer


def test_insight_2_simpson_reversal(frame: pd.DataFrame, answers: list[str]) -> None:
    answer = answers[1]
    api, white = "Asian-Pac-Islander", "White"
    overall = frame.groupby("race")["high"].agg(["mean", "size"])
    assert overall.loc[api, "mean"] > overall.loc[white, "mean"]
    for race in (api, white):
        assert f"{pct(overall.loc[race, 'mean'])} of {num(overall.loc[race, 'size'])}" in answer
    cells = frame[frame["race"].isin([api, white])].groupby(["education", "race"])["high"].agg(["mean", "size"])
    means, sizes = cells["mean"].unstack(), cells["size"].unstack().fillna(0)
    comparable = sizes[(sizes[api] >= 30) & (sizes[white] >= 30)].index
    white_ahead = (means.loc[comparable, white] > means.loc[comparable, api]).sum()
    assert white_ahead == len(comparable) >= 5
    assert f"({white_ahead} of {len(comparable)})" in answer


def test_insight_3_capital_gain_threshold(frame: pd.DataFrame, answers: list[str]) -> None:
    answer = answers[2]
    gain = frame["capital_gain"]
    first_high = int(gain[(gain > 0) & frame["high"]].min())
    small = frame[(gain > 0) & (gain < first_high)]
    assert small["high"].sum() == 0
    assert f"none of the {num(len(small))} people with a gain below {num(first_high)}" in answer
    top = frame[gain == 99_999]
    assert top["high"].all()
    assert f"all {num(len(top))} at the 99,999 top code" in answer
    none = frame[gain == 0]
    assert f"{pct(none['high'].mean())} of the {num(len(none))} with no gain" in answer
    per_amount = frame[gain > 0].groupby("capital_gain")["high"].mean()
    pure = per_amount.isin([0.0, 1.0]).sum()
    assert f"{pure} of the {len(per_amount)} distinct gain amounts" in answer


def test_insight_4_hours_peak_and_gender(frame: pd.DataFrame, answers: list[str]) -> None:
    answer = answers[3]
    hours = frame["hours_per_week"]
    peak = frame[hours.between(50, 59)]
    assert f"{pct(peak['high'].mean())} of {num(len(peak))} people" in answer
    top = frame[hours == 99]
    assert f"{pct(top['high'].mean())} of the {num(len(top))} people" in answer
    assert top["high"].mean() < peak["high"].mean()
    women = peak[peak["gender"] == "Female"]
    men40 = frame[(hours == 40) & (frame["gender"] == "Male")]
    assert f"{pct(women['high'].mean())} of {num(len(women))}" in answer
    assert f"{pct(men40['high'].mean())} of {num(len(men40))}" in answer
    assert women["high"].mean() <= men40["high"].mean()


def test_insight_5_weighted_vs_unweighted(frame: pd.DataFrame, answers: list[str]) -> None:
    answer = answers[4]
    weight = frame["fnlwgt"]
    unweighted = frame["high"].mean()
    weighted = (weight * frame["high"]).sum() / weight.sum()
    assert f"{pct(unweighted)} of rows vs {pct(weighted)} of the weighted population" in answer
    mexico = frame["native_country"] == "Mexico"
    sample_share = mexico.mean()
    population_share = weight[mexico].sum() / weight.sum()
    assert population_share / sample_share > 1.4
    assert f"{pct(sample_share, 2)} of rows but {pct(population_share, 2)} of the weighted population" in answer


def test_insight_6_education_reversal_explained_by_age(frame: pd.DataFrame, answers: list[str]) -> None:
    answer = answers[5]
    eleventh = frame[frame["education"] == "11th"]
    seventh = frame[frame["education"] == "7th-8th"]
    assert eleventh["high"].mean() < seventh["high"].mean()
    assert f"({pct(eleventh['high'].mean())} of {num(len(eleventh))})" in answer
    assert f"({pct(seventh['high'].mean())} of {num(len(seventh))})" in answer
    # The query layer's age bands, restated: 17-24, 25-34, ..., 55-64, 65+.
    bands = pd.cut(frame["age"], [0, 24, 34, 44, 54, 64, 200])
    mix = bands.value_counts(normalize=True)

    def standardized(group: pd.DataFrame) -> float:
        rates = group.groupby(bands.loc[group.index], observed=True)["high"].mean()
        return float((rates * mix.loc[rates.index] / mix.loc[rates.index].sum()).sum())

    std_11, std_7 = standardized(eleventh), standardized(seventh)
    assert std_11 > std_7
    assert f"{pct(std_11)} vs {pct(std_7)}" in answer


# --------------------------------------------------------------------------- helpers


def test_render_insights_is_deterministic_and_validated() -> None:
    six = {f"Question {n}?": f"Answer {n}." for n in range(6)}
    assert lib.render_insights(six) == lib.render_insights(dict(six))
    assert lib.render_insights(six).endswith("}\n")
    with pytest.raises(ValueError):
        lib.render_insights(dict(list(six.items())[:5]))
    with pytest.raises(ValueError):
        lib.render_insights({**dict(list(six.items())[:5]), "Not a question": "x"})


def test_insights_path_is_overridable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(lib.INSIGHTS_ENV, raising=False)
    assert lib.insights_path() == ROOT / "insights.json"
    monkeypatch.setenv(lib.INSIGHTS_ENV, str(tmp_path / "x.json"))
    assert lib.insights_path() == tmp_path / "x.json"


def test_standardize_and_reversal_scan() -> None:
    rates = pd.Series({"a": 0.5, "b": 0.1})
    assert lib.standardize(rates, pd.Series({"a": 3, "b": 1})) == pytest.approx(0.4)
    # A is ahead overall only because it sits mostly in the easy stratum.
    rows = (
        [("A", "easy", 1)] * 80
        + [("A", "easy", 0)] * 10
        + [("A", "hard", 0)] * 10
        + [("B", "easy", 1)] * 10
        + [("B", "hard", 1)] * 30
        + [("B", "hard", 0)] * 60
        + [("A", "mid", 1)] * 5
        + [("A", "mid", 0)] * 5
        + [("B", "mid", 1)] * 8
        + [("B", "mid", 0)] * 2
    )
    frame = pd.DataFrame(rows, columns=["group", "stratum", "y"])
    scan = lib.reversal_scan(frame, ["group"], ["stratum"], "y", min_group=10, min_cell=5, min_strata=3)
    assert len(scan) == 1
    assert scan.loc[0, "higher overall"] == "A" and scan.loc[0, "strata compared"] == 3
