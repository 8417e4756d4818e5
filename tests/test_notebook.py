"""notebooks/insights.ipynb: it runs top to bottom on a freshly loaded database, offline,
and writes exactly the committed insights.json; its filter panel answers in a kernel; and
each insight's headline numbers, intervals and tests are recomputed here from the input
file with pandas and statsmodels (the `input_frame` fixture), independently of the
warehouse, its query layer and warehouse.stats. (How long it takes: benchmarks/notebook.py.)"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, proportions_ztest

from notebooks import insights_lib as lib

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "insights.ipynb"
COMMITTED = ROOT / "insights.json"
CELL_TIMEOUT_S = 600
# Any attempt to reach the network through a proxy-aware client fails fast.
OFFLINE_PROXY = "http://127.0.0.1:9"
ALPHA = 0.05
N_TRAIN = 32_561  # adult.data's rows; adult.test follows (UCI documentation)
UNMARRIED = ("Never-married", "Divorced", "Separated", "Widowed")


# --------------------------------------------------------------------------- independent formatting


def pct(value: float, digits: int = 1) -> str:
    return f"{value * 100:.{digits}f}%"


def num(value: float) -> str:
    return f"{int(round(value)):,}"


def share_ci(flags: pd.Series) -> str:
    """'36.3% (95% CI 30.0–43.1%) of 204' for a boolean Series, with statsmodels' Wilson interval."""
    k, n = int(flags.sum()), int(flags.size)
    low, high = proportion_confint(k, n, alpha=ALPHA, method="wilson")
    return f"{pct(k / n)} (95% CI {low * 100:.1f}–{pct(high)}) of {num(n)}"


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def z_test(first: pd.Series, second: pd.Series) -> float:
    """Two-sided pooled two-proportion z-test p-value (statsmodels)."""
    counts = [int(first.sum()), int(second.sum())]
    sizes = [int(first.size), int(second.size)]
    if counts[0] + counts[1] in (0, sum(sizes)):
        return 1.0
    return float(proportions_ztest(counts, sizes)[1])


def difference_text(first: pd.Series, second: pd.Series) -> str:
    k1, n1, k2, n2 = int(first.sum()), first.size, int(second.sum()), second.size
    low, high = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff", alpha=ALPHA)
    return (
        f"a difference of {(k1 / n1 - k2 / n2) * 100:.1f} points, 95% CI {low * 100:.1f} to {high * 100:.1f}, "
        f"{p_text(z_test(first, second))}"
    )


def holm(p_values: list[float]) -> np.ndarray:
    return multipletests(p_values, alpha=ALPHA, method="holm")[1]


# --------------------------------------------------------------------------- executing the notebook


def kernel_environment(database_url: str, insights_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        INSIGHTS_PATH=str(insights_path),
        # The kernelspec says "python3": make it this interpreter (the project's venv).
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
        HTTP_PROXY=OFFLINE_PROXY,
        HTTPS_PROXY=OFFLINE_PROXY,
        http_proxy=OFFLINE_PROXY,
        https_proxy=OFFLINE_PROXY,
        NO_PROXY="localhost,127.0.0.1",
        no_proxy="localhost,127.0.0.1",
    )
    return env


def execute(notebook: nbformat.NotebookNode, env: dict[str, str]) -> nbformat.NotebookNode:
    assert notebook.metadata.kernelspec.name == "python3"
    client = NotebookClient(
        notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute(env=env)
    return notebook


@pytest.fixture(scope="module")
def executed(sqlite_census_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The notebook executed by nbclient against a database built by the real loader,
    writing insights.json to a temporary path."""
    out = tmp_path_factory.mktemp("insights") / "insights.json"
    notebook = execute(nbformat.read(NOTEBOOK, as_version=4), kernel_environment(sqlite_census_url, out))
    return {"notebook": notebook, "written": out}


@pytest.mark.slow
def test_notebook_writes_the_committed_insights(executed: dict) -> None:
    assert executed["written"].read_bytes() == COMMITTED.read_bytes()


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


@pytest.mark.slow
def test_the_filter_panel_cell_answers_what_the_panel_selects(
    sqlite_census_url: str, tmp_path: Path, input_frame: pd.DataFrame
) -> None:
    """The notebook's set-up cells and its filter-panel cell, run in a kernel; then the panel
    is changed the way a user would (a widget's value) and the live summary must follow."""
    source = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c for c in source.cells if {"setup", "filter-panel"} & set(c.metadata.get("tags", []))]
    assert [c.metadata["tags"][0] for c in cells][-1] == "filter-panel"
    probe = nbformat.v4.new_code_cell(
        "import json\n"
        "preset = live_summary().object\n"
        "filters.param.update(relationship=['Husband'])\n"
        "husbands = live_summary().object\n"
        "filters.param.update(hours_per_week=(40, 40), relationship=[])\n"
        "standard_week = live_summary().object\n"
        "print(json.dumps([preset, husbands, standard_week]))"
    )
    notebook = nbformat.v4.new_notebook(cells=[*cells, probe], metadata=source.metadata)
    execute(notebook, kernel_environment(sqlite_census_url, tmp_path / "unused.json"))
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs if o.output_type == "stream")
    preset, husbands, standard_week = json.loads(printed)

    frame = input_frame.assign(high=input_frame["income"].eq(">50K"))
    few = frame["hours_per_week"] <= 19
    assert f"{share_ci(frame.loc[few & frame['relationship'].eq('Wife'), 'high'])} earn >50K" in preset
    assert f"{share_ci(frame.loc[few & frame['relationship'].eq('Husband'), 'high'])} earn >50K" in husbands
    assert f"{share_ci(frame.loc[frame['hours_per_week'].eq(40), 'high'])} earn >50K" in standard_week
    assert len({preset, husbands, standard_week}) == 3


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
        # Every answer quotes a share with its interval and the people behind it.
        assert re.search(r"\d+\.\d% \(95% CI \d+\.\d–\d+\.\d%\) of [\d,]+", answer), answer
    assert text == lib.render_insights(insights)  # deterministic form, trailing newline


# --------------------------------------------------------------------------- headline numbers, from the input file


@pytest.fixture(scope="module")
def answers() -> list[str]:
    return list(json.loads(COMMITTED.read_text(encoding="utf-8")).values())


@pytest.fixture(scope="module")
def frame(input_frame: pd.DataFrame) -> pd.DataFrame:
    out = input_frame.assign(high=input_frame["income"].eq(">50K"))
    out["part"] = np.where(np.arange(len(out)) < N_TRAIN, "train", "test")
    return out


@pytest.fixture(scope="module")
def claims(frame: pd.DataFrame) -> list[dict]:
    """Every p-value insights.json quotes, recomputed here, with whether the answer states it
    as a difference (True) or as no detectable difference (False)."""
    return [
        *insight_1(frame)["claims"],
        *insight_2(frame)["claims"],
        *insight_3(frame)["claims"],
        *insight_4(frame)["claims"],
        *insight_5(frame)["claims"],
        *insight_6(frame)["claims"],
    ]


def insight_1(frame: pd.DataFrame) -> dict:
    few = frame[frame["hours_per_week"] <= 19]
    wives = few.loc[few["relationship"] == "Wife", "high"]
    women = few[few["gender"] == "Female"]
    others = {
        "never-married": women.loc[women["marital_status"] == "Never-married", "high"],
        "divorced": women.loc[women["marital_status"] == "Divorced", "high"],
        "widowed": women.loc[women["marital_status"] == "Widowed", "high"],
        "own child": few.loc[few["relationship"] == "Own-child", "high"],
    }
    adjusted = dict(zip(others, holm([z_test(wives, g) for g in others.values()]), strict=True))
    married = frame[frame["marital_status"] == "Married-civ-spouse"]
    m_women, m_men = (
        married.loc[married["gender"] == "Female", "high"],
        married.loc[married["gender"] == "Male", "high"],
    )
    married_p = z_test(m_women, m_men)
    return {
        "texts": [
            f"{share_ci(wives)} wives are above 50K vs {share_ci(others['never-married'])} never-married women "
            f"(Holm-adjusted {p_text(adjusted['never-married'])})",
            f"({share_ci(m_women)} vs {share_ci(m_men)}, {p_text(married_p)}) say nothing about equal pay",
        ],
        "claims": [
            {
                "text": f"Holm-adjusted {p_text(adjusted['never-married'])}",
                "p": adjusted["never-married"],
                "difference": True,
            },
            {"text": f"{share_ci(m_men)}, {p_text(married_p)}) say nothing", "p": married_p, "difference": False},
        ],
    }


def insight_2(frame: pd.DataFrame) -> dict:
    standard = frame[frame["marital_status"].isin(UNMARRIED) & (frame["hours_per_week"] == 40)]
    women, men = standard[standard["gender"] == "Female"], standard[standard["gender"] == "Male"]
    bands = pd.cut(
        standard["age"], [0, 24, 34, 44, 54, 64, 200], labels=["17-24", "25-34", "35-44", "45-54", "55-64", "65+"]
    )
    tests = []
    for band in bands.cat.categories:
        m, w = men.loc[bands[men.index] == band, "high"], women.loc[bands[women.index] == band, "high"]
        tests.append({"band": band, "men": m, "women": w, "gap": m.mean() - w.mean(), "p": z_test(m, w)})
    for test, adjusted in zip(tests, holm([t["p"] for t in tests]), strict=True):
        test["holm"] = adjusted
    significant = [t for t in tests if t["holm"] < ALPHA]
    widest = max(significant, key=lambda t: t["gap"])
    return {
        "texts": [
            f"{share_ci(women['high'])} unmarried women vs {share_ci(men['high'])} unmarried men earn >50K "
            f"({difference_text(men['high'], women['high'])})",
            f"significantly ahead in {len(significant)} of {len(tests)} age bands (Holm-adjusted), the widest gap at "
            f"{widest['band']} ({share_ci(widest['men'])} vs {share_ci(widest['women'])})",
        ],
        "claims": [
            {
                "text": difference_text(men["high"], women["high"]),
                "p": z_test(men["high"], women["high"]),
                "difference": True,
            },
            *({"text": None, "p": t["holm"], "difference": True} for t in significant),
        ],
    }


def insight_3(frame: pd.DataFrame) -> dict:
    train, test = frame[frame["part"] == "train"], frame[frame["part"] == "test"]
    gain = train["capital_gain"]
    first_high = int(gain[(gain > 0) & train["high"]].min())
    per_amount = train[gain > 0].groupby("capital_gain")["high"].agg(["sum", "size"]).sort_index()
    tail = per_amount["sum"][::-1].cumsum()[::-1] / per_amount["size"][::-1].cumsum()[::-1]
    high_cut = int(tail[tail >= 0.95].index.min())
    assert train.loc[(gain > 0) & (gain < first_high), "high"].sum() == 0  # by construction, on the training part
    t_gain = test["capital_gain"]
    small = test.loc[(t_gain > 0) & (t_gain < first_high), "high"]
    zero = test.loc[t_gain == 0, "high"]
    large = test.loc[t_gain >= high_cut, "high"]
    p = z_test(zero, small)
    return {
        "texts": [
            f"{share_ci(small)} people with a gain below {num(first_high)} earn >50K, fewer than the {share_ci(zero)} "
            f"with no gain ({p_text(p)}), while {share_ci(large)} people with {num(high_cut)} or more do",
        ],
        "claims": [{"text": f"with no gain ({p_text(p)})", "p": p, "difference": True}],
    }


def insight_4(frame: pd.DataFrame) -> dict:
    missing = frame["workclass"].isna()
    p = z_test(frame.loc[~missing, "high"], frame.loc[missing, "high"])
    oldest = (frame.loc[missing, "age"] >= 65).mean()
    complete = frame.dropna(subset=["workclass", "occupation", "native_country"])
    return {
        "texts": [
            f"far less often ({share_ci(frame.loc[missing, 'high'])}) than the others "
            f"({share_ci(frame.loc[~missing, 'high'])}, {p_text(p)}), and {pct(oldest)} of them are 65+",
            f"moves the overall share from {pct(frame['high'].mean(), 2)} to {pct(complete['high'].mean(), 2)}",
        ],
        "claims": [{"text": f"{share_ci(frame.loc[~missing, 'high'])}, {p_text(p)})", "p": p, "difference": True}],
    }


def insight_5(frame: pd.DataFrame) -> dict:
    api, white = frame[frame["race"] == "Asian-Pac-Islander"], frame[frame["race"] == "White"]
    overall_p = z_test(api["high"], white["high"])
    levels = []
    for education in frame.sort_values("education_num")["education"].unique():
        a, w = api.loc[api["education"] == education, "high"], white.loc[white["education"] == education, "high"]
        if min(a.size, w.size) >= 30:
            levels.append({"education": education, "api": a, "white": w, "p": z_test(w, a)})
    for level, adjusted in zip(levels, holm([lv["p"] for lv in levels]), strict=True):
        level["holm"] = adjusted
    significant = [lv for lv in levels if lv["holm"] < ALPHA]
    assert len(significant) == 1  # the answer says "significantly only for" one level
    only = significant[0]
    assert only["white"].mean() > only["api"].mean()
    degree = {name: (group["education_num"] >= 13).mean() for name, group in (("api", api), ("white", white))}
    return {
        "texts": [
            f"Not detectably: {share_ci(api['high'])} vs {share_ci(white['high'])} ({p_text(overall_p)})",
            f"({pct(degree['api'])} vs {pct(degree['white'])} with a bachelor's or more)",
            f"White people are ahead at {sum(lv['white'].mean() > lv['api'].mean() for lv in levels)} of {len(levels)} "
            f"levels, significantly only for {only['education']} ({share_ci(only['white'])} vs {share_ci(only['api'])}, "
            f"Holm-adjusted {p_text(only['holm'])} over {len(levels)} levels)",
        ],
        "claims": [
            # Stated as no difference: the hedge is part of the claim.
            {
                "text": f"Not detectably: {share_ci(api['high'])} vs {share_ci(white['high'])} ({p_text(overall_p)})",
                "p": overall_p,
                "difference": False,
            },
            {"text": f"Holm-adjusted {p_text(only['holm'])} over", "p": only["holm"], "difference": True},
            *({"text": None, "p": lv["holm"], "difference": False} for lv in levels if lv is not only),
        ],
    }


def insight_6(frame: pd.DataFrame) -> dict:
    adults = frame[frame["age"] >= 25]
    order = adults.groupby("education")["education_num"].first().sort_values().index
    groups = [adults.loc[adults["education"] == level, "high"] for level in order]
    adjusted = holm([z_test(upper, lower) for lower, upper in zip(groups[:-1], groups[1:], strict=True)])
    diploma = list(order).index("HS-grad")
    below = adjusted[: diploma - 1]
    assert (below >= ALPHA).all()
    assert adjusted[diploma - 1] < ALPHA  # 12th -> HS-grad, quoted as a significant step
    return {
        "texts": [
            f"none of the {len(below)} steps below a high-school diploma is significant (Holm-adjusted), from "
            f"{share_ci(groups[0])} to {share_ci(groups[diploma - 1])}",
            f"{share_ci(groups[diploma - 1])} at {order[diploma - 1]} to {share_ci(groups[diploma])} at HS-grad",
        ],
        "claims": [
            *({"text": None, "p": p, "difference": False} for p in below),
            {"text": None, "p": adjusted[diploma - 1], "difference": True},
        ],
    }


@pytest.mark.parametrize(
    ("index", "insight"),
    [(0, insight_1), (1, insight_2), (2, insight_3), (3, insight_4), (4, insight_5), (5, insight_6)],
    ids=["household-label", "unmarried-gap", "capital-gain", "missing-workclass", "race", "education-steps"],
)
def test_headline_numbers_and_intervals(frame: pd.DataFrame, answers: list[str], index: int, insight) -> None:
    for text in insight(frame)["texts"]:
        assert text in answers[index]


def test_every_stated_difference_is_significant(claims: list[dict], answers: list[str]) -> None:
    """What the answers call a difference has p < 0.05 (Holm-adjusted where they say so), and
    what they call no (detectable) difference has p >= 0.05 — recomputed with statsmodels. Every
    p-value the answers quote is one of these claims."""
    everything = " ".join(answers)
    for claim in claims:
        if claim["difference"]:
            assert claim["p"] < ALPHA, claim
        else:
            assert claim["p"] >= ALPHA, claim
        if claim["text"] is not None:
            assert claim["text"] in everything, claim["text"]
    quoted = re.findall(r"p (?:<|=) [\d.]+", everything)
    assert len(quoted) == len([c for c in claims if c["text"] is not None and "p " in c["text"]])


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


def test_text_helpers_quote_interval_and_test() -> None:
    row = lib.share_row(74, 204)
    low, high = proportion_confint(74, 204, alpha=ALPHA, method="wilson")
    assert lib.share_ci(row) == f"36.3% (95% CI {low * 100:.1f}–{high * 100:.1f}%) of 204"
    test = lib.compare(lib.share_row(74, 204), lib.share_row(2, 773))
    assert lib.difference_text(test).startswith("a difference of 36.0 points, 95% CI ")
    assert lib.p_text(0.1834) == "p = 0.18" and lib.p_text(0.0004) == "p < 0.001"


def test_standardize() -> None:
    rates = pd.Series({"a": 0.5, "b": 0.1})
    assert lib.standardize(rates, pd.Series({"a": 3, "b": 1})) == pytest.approx(0.4)
