"""Explorer unit tests without a browser: set widget and parameter values, check the
bound outputs (counts, pages, chart data, titles, FileDownload output) against values
computed independently with pandas from the input file."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import pytest

from devtools.reference import select_people
from explorer.browse import BrowseView, display_value
from explorer.export_tab import EXCEL_MAX_DATA_ROWS, ExportView, export_filename
from explorer.filters import CATEGORY_FILTERS, RANGE_FILTERS, UNKNOWN_LABEL, FilterPanel, category_options
from explorer.store import DataStore, clear_cache
from explorer.visualize import ChartSpec, VisualizeView, make_chart
from warehouse import analytics
from warehouse.domain import CATEGORIES, NULLABLE_COLUMNS
from warehouse.query import PEOPLE_COLUMNS, UNKNOWN, PeopleFilter


@pytest.fixture(scope="module")
def store(sqlite_census_url: str) -> DataStore:
    clear_cache()
    data = DataStore(sqlite_census_url)
    # Pin the engine that answers: wait for the background warm-up of the analytic
    # copy (DuckDB) that DataStore's engine starts, so no test races it.
    assert analytics.warm_up(data.engine) is not None
    assert data.check(), data.message
    return data


def frame_filter(frame: pd.DataFrame, panel: FilterPanel) -> pd.DataFrame:
    """The panel's filter applied to the input file by the pandas reference."""
    ranges = {column: getattr(panel, column) for column in RANGE_FILTERS}
    categories = {
        column: [None if v == UNKNOWN_LABEL else v for v in getattr(panel, column)] for column in CATEGORY_FILTERS
    }
    return select_people(frame, ranges, categories)


# --------------------------------------------------------------------------- filters


def test_filter_panel_defaults_and_options() -> None:
    panel = FilterPanel()
    assert panel.people_filter == PeopleFilter()
    assert panel.describe() == "everyone"
    for column in CATEGORIES:
        options = category_options(column)
        assert (UNKNOWN_LABEL in options) == (column in NULLABLE_COLUMNS)
    layout = panel.__panel__()
    # The summary, the chips' row, a slider and a row of number boxes per range, the
    # categories, Reset.
    assert isinstance(layout, pn.Column) and len(layout) == 2 + 2 * len(RANGE_FILTERS) + len(CATEGORY_FILTERS) + 1
    assert {"capital_loss", "fnlwgt"} <= set(RANGE_FILTERS)  # every range attribute of the contract


def test_filter_panel_builds_the_warehouse_filter() -> None:
    panel = FilterPanel()
    panel.param.update(age=(30, 100), hours_per_week=(20, 60), gender=["Female"], workclass=[UNKNOWN_LABEL, "Private"])
    built = panel.people_filter
    assert built.ranges == {"age": (30, None), "hours_per_week": (20, 60)}
    assert built.categories == {"gender": ("Female",), "workclass": (UNKNOWN, "Private")}
    params = panel.to_params()
    assert params["workclass"] == ["unknown", "Private"] and params["hours_min"] == ["20"]
    other = FilterPanel()
    other.set_params(params)
    assert other.people_filter == built
    assert (other.age, other.workclass) == ((30, 100), [UNKNOWN_LABEL, "Private"])
    other.reset()
    assert other.people_filter.is_empty


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"gender": ["Female"], "age": (30, 45)},
        {"workclass": [UNKNOWN_LABEL]},
        {"occupation": [UNKNOWN_LABEL, "Sales"], "income": [">50K"]},
        {"education_num": (13, 16), "native_country": ["Mexico", UNKNOWN_LABEL]},
        {"capital_gain": (1, 99_999), "race": ["Black", "Other"], "marital_status": ["Divorced"]},
        {"hours_per_week": (50, 99), "relationship": ["Wife"], "education": ["Masters", "Doctorate"]},
    ],
)
def test_filtered_counts_match_pandas(store: DataStore, input_frame: pd.DataFrame, values: dict) -> None:
    panel = FilterPanel()
    panel.param.update(**values)
    assert store.count(panel.people_filter) == len(frame_filter(input_frame, panel))


# --------------------------------------------------------------------------- browse


def test_display_values() -> None:
    assert display_value(1234567) == "1,234,567"
    assert display_value(None) == "Unknown"
    assert display_value(float("nan")) == "Unknown"
    assert display_value("Private") == "Private"


def test_browse_pages_and_sorts_in_sql(store: DataStore, input_frame: pd.DataFrame) -> None:
    view = BrowseView(store)
    table = view.tabulator
    assert view.table == "people" and view.param.table.objects[0] == "people"
    assert table.total_rows == len(input_frame)
    assert f"{len(input_frame):,} rows" in view.row_count.object
    assert len(table.value) == 25 and list(table.value.columns) == list(PEOPLE_COLUMNS)
    assert table.titles["hours_per_week"] == "Hours per week"
    first = input_frame.iloc[0]
    assert table.value.iloc[0]["fnlwgt"] == f"{first['fnlwgt']:,}"
    table.page = 3
    assert table.value.iloc[0]["id"] == "51"
    table.sorters = [{"field": "age", "dir": "desc"}]
    assert table.page == 1 and table.value.iloc[0]["age"] == str(input_frame["age"].max())
    table.sorters = [{"field": "workclass", "dir": "asc"}]
    table.page = table.param.page.bounds[1]  # the last page: missing values sort last
    assert table.value.iloc[-1]["workclass"] == "Unknown"
    assert table.param.page.bounds == (1, -(-len(input_frame) // 25))


def test_browse_column_picker_and_table_switch(store: DataStore) -> None:
    view = BrowseView(store)
    view.column_picker.value = ["age", "income"]
    assert list(view.tabulator.value.columns) == ["age", "income"]
    view.table = "load"
    assert "source_name" in view.column_picker.value and "age" not in view.column_picker.options.values()
    assert list(view.tabulator.value.columns) == view.column_picker.value
    assert view.tabulator.total_rows == 1
    view.table = "people"
    assert view.column_picker.value == list(PEOPLE_COLUMNS)
    view.table = "workclass"
    assert view.tabulator.total_rows == len(CATEGORIES["workclass"])


# --------------------------------------------------------------------------- visualize


def _visualize(store: DataStore, **filters: object) -> VisualizeView:
    panel = FilterPanel()
    panel.param.update(**filters)
    return VisualizeView(store, panel)


def test_bar_chart_counts_follow_the_filters(store: DataStore, input_frame: pd.DataFrame) -> None:
    view = _visualize(store)
    view.param.update(chart_type="bar", x="education", measure="people")
    expected = input_frame["education"].value_counts()
    data = view.result.data.set_index("education")["people"]
    assert data.to_dict() == expected.to_dict()
    view.filters.gender = ["Female"]
    view.filters.age = (30, 50)
    subset = frame_filter(input_frame, view.filters)
    assert view.result.data.set_index("education")["people"].to_dict() == subset["education"].value_counts().to_dict()
    assert view.result.people == len(subset)
    title = view.result.chart.opts.get().kwargs["title"]
    assert "Number of people by education" in title and "Gender: Female" in title and "Age 30–50" in title


def test_measures_match_pandas(store: DataStore, input_frame: pd.DataFrame) -> None:
    view = _visualize(store, workclass=[UNKNOWN_LABEL, "Private", "State-gov"])
    subset = frame_filter(input_frame, view.filters)
    view.param.update(chart_type="grouped", x="workclass", group="gender", measure="mean_hours")
    got = view.result.data.set_index(["workclass", "gender"])["mean_hours"]
    expected = subset.fillna({"workclass": "Unknown"}).groupby(["workclass", "gender"])["hours_per_week"].mean()
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False, check_index_type=False)
    view.chart_type = "bar"
    view.param.update(x="race", group=None, measure="share_over_50k")
    got = view.result.data.set_index("race")["share_over_50k"]
    expected = subset.groupby("race")["income"].apply(lambda s: (s == ">50K").mean() * 100)
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False, check_index_type=False)
    view.param.update(chart_type="heatmap", x="education", group="race", measure="population")
    got = view.result.data.set_index(["education", "race"])["population"]
    expected = subset.groupby(["education", "race"])["fnlwgt"].sum()
    assert got.sort_index().to_dict() == expected.sort_index().to_dict()


def test_line_over_age(store: DataStore, input_frame: pd.DataFrame) -> None:
    view = _visualize(store)
    view.param.update(chart_type="line", group="gender", measure="mean_capital_gain")
    assert view.x == "age"
    got = view.result.data.set_index(["age", "gender"])["mean_capital_gain"]
    expected = input_frame.groupby(["age", "gender"])["capital_gain"].mean()
    np.testing.assert_allclose(got.sort_index().to_numpy(), expected.sort_index().to_numpy())


def test_histogram_and_box_plot_are_exact(store: DataStore, input_frame: pd.DataFrame) -> None:
    view = _visualize(store, income=[">50K"])
    subset = frame_filter(input_frame, view.filters)
    view.param.update(chart_type="histogram", x="hours_per_week", group=None)
    data = view.result.data
    assert data["people"].sum() == len(subset)
    edges = np.append(data["left"].to_numpy(), data["right"].iloc[-1])
    expected, _ = np.histogram(subset["hours_per_week"], bins=edges)
    assert data["people"].tolist() == expected.tolist()
    view.param.update(chart_type="box", x="age", group="race")
    boxes = view.result.data.set_index("group")
    for race, part in subset.groupby("race"):
        q1, median, q3 = np.quantile(part["age"], [0.25, 0.5, 0.75])
        assert (boxes.loc[race, "q1"], boxes.loc[race, "median"], boxes.loc[race, "q3"]) == pytest.approx(
            (q1, median, q3)
        )
        assert boxes.loc[race, "people"] == len(part)


def test_no_match_and_impossible_charts_give_messages(store: DataStore) -> None:
    view = _visualize(store, education=["Preschool"], income=[">50K"], age=(17, 20))
    assert view.result.chart is None and view.result.people == 0
    assert "No one matches" in view.result.message and "Education: Preschool" in view.result.message
    area = view._chart_panes()
    assert view._message.visible and "No one matches" in view._message.object
    assert not view._drawn.visible and area.objects[0] is view._message
    view.filters.reset()
    view.param.update(chart_type="heatmap")
    assert view.group is not None and view.result.chart is not None  # a group is chosen for it
    assert "needs an attribute" in (
        make_chart(store, ChartSpec("heatmap", "education", None), PeopleFilter()).message or ""
    )


# Each chart type, the Bokeh glyphs it must draw, its axis labels and its title's subject.
RENDERED = {
    "bar": (ChartSpec("bar", "education", None, "people"), ["VBar"], "Education", "Number of people",
            "Number of people by education"),
    "stacked": (ChartSpec("stacked", "race", "income", "people"), ["VBar"], "Race", "Number of people",
                "Number of people by race and income"),
    "grouped": (ChartSpec("grouped", "race", "income", "mean_age"), ["VBar"], "Race", "Mean age",
                "Mean age by race and income (sample)"),
    "histogram": (ChartSpec("histogram", "hours_per_week", None, "people"), ["Quad"], "Hours per week",
                  "Number of people", "Distribution of hours per week (number of people)"),
    "box": (ChartSpec("box", "age", "race", "people"), ["Quad", "Segment", "Segment"], "Race", "Age",
            "Age (quartiles) by race"),
    "heatmap": (ChartSpec("heatmap", "education", "race", "population"), ["Rect"], "Education", "Race",
                "Population represented (sum of fnlwgt) by education and race"),
    # Per line: its interval as a band (Patch), the line, its points (Scatter).
    "line": (ChartSpec("line", "age", "income", "mean_hours"), ["Patch", "Line", "Scatter"] * 2, "Age",
             "Mean hours per week", "Mean hours per week over age, by income (sample)"),
}  # fmt: skip


def _columns(renderer: object) -> dict[str, list]:
    return {k: list(v) for k, v in renderer.data_source.data.items()}  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", list(RENDERED))
def test_every_chart_type_renders_the_filtered_data(store: DataStore, input_frame: pd.DataFrame, kind: str) -> None:
    """What Bokeh draws, compared with pandas on the input: glyph types, the values
    they plot, the axis labels and the title."""
    import holoviews as hv

    spec, glyphs, x_label, y_label, subject = RENDERED[kind]
    view = _visualize(store, gender=["Male"])
    view.set_spec(spec)
    assert view.result.chart is not None, view.result.message
    figure = hv.render(view.result.chart, backend="bokeh")
    subset = frame_filter(input_frame, view.filters)
    assert figure.title.text == f"{subject} — Gender: Male ({len(subset):,} people)"
    assert [axis.axis_label for axis in figure.xaxis] == [x_label]
    assert [axis.axis_label for axis in figure.yaxis] == [y_label]
    renderers = list(figure.renderers)
    assert [type(r.glyph).__name__ for r in renderers] == glyphs
    data = _columns(renderers[0])
    if kind == "bar":
        assert renderers[0].glyph.x == "education" and renderers[0].glyph.top == "people"
        assert dict(zip(data["education"], data["people"])) == subset["education"].value_counts().to_dict()
    elif kind == "stacked":
        heights = {(r, i): t - b for r, i, t, b in zip(data["race"], data["income"], data["top"], data["bottom"])}
        assert heights == subset.groupby(["race", "income"]).size().to_dict()
        for race, part in subset.groupby("race"):  # stacked: the top of each column is the race's total
            assert max(t for r, t in zip(data["race"], data["top"]) if r == race) == len(part)
    elif kind == "grouped":
        assert renderers[0].glyph.top == "mean_age"
        got = {tuple(x): y for x, y in zip(data["xoffsets"], data["mean_age"])}
        assert got == pytest.approx(subset.groupby(["race", "income"])["age"].mean().to_dict())
    elif kind == "histogram":
        hours = subset["hours_per_week"].to_numpy()
        expected = [int(((hours > low) & (hours < high)).sum()) for low, high in zip(data["left"], data["right"])]
        assert data["top"] == expected and sum(expected) == len(subset)
        assert data["left"][0] < hours.min() and data["right"][-1] > hours.max()
    elif kind == "box":
        medians = _columns(renderers[2])
        for position, race in enumerate(data["group"]):
            ages = subset.loc[subset["race"] == race, "age"]
            q1, median, q3 = np.quantile(ages, [0.25, 0.5, 0.75])
            assert (data["bottom"][position], data["top"][position]) == pytest.approx((q1, q3)), race
            assert medians["y0"][position] == medians["y1"][position] == pytest.approx(median), race
        assert sorted(data["group"]) == sorted(subset["race"].unique())
    elif kind == "heatmap":
        got = {(e, r): z for e, r, z in zip(data["education"], data["race"], data["zvalues"])}
        assert got == subset.groupby(["education", "race"])["fnlwgt"].sum().to_dict()
    else:
        legend = {
            item.label["value"]: next(r for r in item.renderers if type(r.glyph).__name__ == "Line")
            for item in figure.legend[0].items
        }
        assert set(legend) == {"<=50K", ">50K"}
        for income, renderer in legend.items():
            line = _columns(renderer)
            expected = subset[subset["income"] == income].groupby("age")["hours_per_week"].mean()
            assert line["age"] == expected.index.tolist()
            assert line["mean_hours"] == pytest.approx(expected.tolist())
        assert view.spec.filename("png").startswith("census-line-")


# --------------------------------------------------------------------------- export


def _download(view: ExportView) -> Path:
    produced = view.download.callback()
    assert isinstance(produced, Path), view.problem.object
    assert produced.name == view.download.filename
    return produced


def test_export_count_preview_and_csv(store: DataStore, input_frame: pd.DataFrame) -> None:
    view = ExportView(store)
    view.filters.param.update(gender=["Female"], occupation=[UNKNOWN_LABEL])
    view.column_picker.value = ["age", "occupation", "income"]
    subset = frame_filter(input_frame, view.filters)
    assert view.rows == len(subset)
    assert f"**{len(subset):,} rows**" in view.count_text.object
    assert list(view.preview.value.columns) == ["age", "occupation", "income"] and len(view.preview.value) == 10
    assert set(view.preview.value["occupation"]) == {"Unknown"}
    assert view.download.filename.startswith("census-people_gender-female-occupation-unknown_3-columns_")
    path = _download(view)
    exported = pd.read_csv(path, keep_default_na=False, na_values=[""])
    assert len(exported) == len(subset) and list(exported.columns) == ["age", "occupation", "income"]
    assert exported["age"].sum() == subset["age"].sum() and exported["occupation"].isna().all()


@pytest.mark.parametrize("fmt", ["JSON", "Parquet", "Excel"])
def test_export_formats(store: DataStore, input_frame: pd.DataFrame, fmt: str) -> None:
    view = ExportView(store)
    view.filters.param.update(race=["Amer-Indian-Eskimo"], workclass=[UNKNOWN_LABEL, "Private"])
    view.fmt = fmt
    subset = frame_filter(input_frame, view.filters)
    path = _download(view)
    if fmt == "JSON":
        rows = json.loads(path.read_text())  # one JSON array, as a .json file should be
        assert isinstance(rows, list)
        exported = pd.DataFrame(rows)
    elif fmt == "Parquet":
        exported = pd.read_parquet(path)
    else:
        exported = pd.read_excel(path)
    assert list(exported.columns) == list(PEOPLE_COLUMNS)  # the same headers in every format
    assert len(exported) == len(subset)
    assert exported["fnlwgt"].sum() == subset["fnlwgt"].sum()
    assert exported["workclass"].isna().sum() == subset["workclass"].isna().sum()
    assert path.suffix == {"JSON": ".json", "Parquet": ".parquet", "Excel": ".xlsx"}[fmt]


def test_export_guards_excel_size(store: DataStore, monkeypatch: pytest.MonkeyPatch) -> None:
    view = ExportView(store)
    monkeypatch.setattr(store, "count", lambda _filter: EXCEL_MAX_DATA_ROWS + 1)
    view.fmt = "Excel"
    assert view.problem.visible and "do not fit in one Excel sheet" in view.problem.object
    assert view.download.disabled
    produced = view.download.callback()
    assert isinstance(produced, io.BytesIO) and produced.getvalue() == b""
    view.fmt = "CSV"
    assert not view.problem.visible and not view.download.disabled


def test_export_filename_names_the_export() -> None:
    name = export_filename("Parquet", PeopleFilter(ranges={"age": (30, 40)}), ["age"], 12)
    assert name.startswith("census-people_age-30-40_1-columns_12-rows_") and name.endswith(".parquet")


def test_export_filename_keeps_whole_filters() -> None:
    countries = tuple(CATEGORIES["native_country"][:9])
    wide = PeopleFilter(
        categories={"gender": ("Female",), "native_country": countries, "race": ("White",), "relationship": ("Wife",)},
        ranges={"age": (30, 40)},
    )
    name = export_filename("JSON", wide, ["age"], 12)
    slug = name.removeprefix("census-people_").split("_")[0]
    conditions = [re.sub(r"[^a-z0-9]+", "-", c.lower()).strip("-") for c in wide.describe().split(" · ")]
    kept, _, more = slug.partition("-and-")
    # Whole conditions from the start, then how many more there are: never cut mid-condition.
    assert more and more.endswith("-more-filters"), slug
    count = int(more.split("-")[0])
    assert kept == "-".join(conditions[: len(conditions) - count]) and count >= 1
    assert kept.startswith("gender-female-native-country-")
    assert len(name) < 255 and name.endswith(".json")


# --------------------------------------------------------------------------- app


def _texts(template: object) -> str:
    return "\n".join(str(obj.object) for obj in _main(template).select(pn.pane.Markdown))


def _main(template: object) -> pn.Column:
    return pn.Column(*template.main)  # type: ignore[attr-defined]


def test_app_banner_when_empty(sqlite_engine, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from explorer.app import build

    monkeypatch.setenv("GIT_COMMIT", "abc1234")
    url = sqlite_engine.url.render_as_string(hide_password=False)
    template = build(DataStore(url), {})
    alerts = [a.object for a in _main(template).select(pn.pane.Alert)]
    assert any("run the upload first: python -m loaders.upload" in text for text in alerts)
    assert "abc1234" in _texts(template)


def test_app_banner_when_unreachable() -> None:
    from explorer.app import build

    template = build(DataStore("postgresql+psycopg2://nobody:secret@127.0.0.1:9/none"), {})
    alerts = [a.object for a in _main(template).select(pn.pane.Alert)]
    assert any("unreachable" in text for text in alerts) and not any("secret" in text for text in alerts)


def test_app_url_state_round_trip(store: DataStore) -> None:
    from explorer.app import ExplorerApp

    app = ExplorerApp(
        store,
        {
            "tab": ["visualize"],
            "gender": ["Female"],
            "age_min": ["40"],
            "chart": ["grouped"],
            "x": ["race"],
            "group": ["income"],
            "measure": ["mean_age"],
        },
    )
    assert app.tab == "visualize" and app.visualize.spec == ChartSpec("grouped", "race", "income", "mean_age")
    assert app.visualize.filters.people_filter == PeopleFilter(
        ranges={"age": (40, None)}, categories={"gender": ("Female",)}
    )
    params = app.url_params()
    assert params["tab"] == ["visualize"] and params["gender"] == ["Female"] and params["chart"] == ["grouped"]
    app.visualize.filters.workclass = [UNKNOWN_LABEL]
    assert app.url_params()["workclass"] == ["unknown"]
    app.tabs.active = 2
    assert app.export is not None and app.url_params()["tab"] == ["export"]
    broken = ExplorerApp(store, {"age_min": ["old"]})
    assert broken.notice and "age_min" in broken.notice


def test_filter_panel_renders_in_a_notebook(tmp_path: Path) -> None:
    import nbclient
    import nbformat

    root = Path(__file__).resolve().parent.parent
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(f"import sys; sys.path.insert(0, {str(root)!r})\nimport panel as pn\npn.extension()"),
        nbformat.v4.new_code_cell("from explorer.filters import FilterPanel\nfilters = FilterPanel()\nfilters"),
        nbformat.v4.new_code_cell(
            "filters.gender = ['Female']\nfilters.workclass = ['Unknown']\nprint(filters.people_filter.to_params())"
        ),
    ]
    nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    shown = notebook.cells[1].outputs
    assert shown and any(
        "application/vnd.holoviews_exec.v0+json" in out.get("data", {}) or "text/html" in out.get("data", {})
        for out in shown
    ), shown
    printed = "".join(out.get("text", "") for out in notebook.cells[2].outputs)
    assert "'gender': ['Female']" in printed and "'workclass': ['unknown']" in printed


# --------------------------------------------------------------------------- how far to trust a number (issue 14)


def _wilson_percent(hits: int, n: int) -> tuple[float, float]:
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(hits, n, alpha=0.05, method="wilson")
    return low * 100, high * 100


def test_bar_intervals_and_flags_match_statsmodels(store: DataStore, input_frame: pd.DataFrame) -> None:
    """A share per occupation: n from pandas, the Wilson interval from statsmodels, and the
    NCHS flag (n < 30 or RSE > 30%) decide what is faded; the tooltip and table say why."""
    view = _visualize(store, gender=["Female"], age=(40, 100), education=["Bachelors"])
    view.param.update(chart_type="bar", x="occupation", measure="share_over_50k")
    subset = frame_filter(input_frame, view.filters).fillna({"occupation": "Unknown"})
    data = view.result.data.set_index("occupation")
    assert view.result.chart is not None and data.index.tolist()[-1] == "Unknown"
    faded = []
    for occupation, part in subset.groupby("occupation"):
        n, hits = len(part), int((part["income"] == ">50K").sum())
        row = data.loc[occupation]
        assert row["people"] == n
        assert row["share_over_50k"] == pytest.approx(hits / n * 100)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(_wilson_percent(hits, n))
        share = hits / n
        rse = np.sqrt(share * (1 - share) / n) / share if share else 0.0
        assert bool(row["reliable"]) == (n >= 30 and rse <= 0.30), occupation
        if not row["reliable"]:
            faded.append(occupation)
            assert row["note"] == (
                "fewer than 30 people" if n < 30 else f"relative standard error {rse:.0%} (above 30%)"
            )
    assert faded and view.result.faded == len(faded)
    low, high = _wilson_percent(int((subset["income"] == ">50K").sum()), len(subset))
    assert 0 <= low < high <= 100


def test_grouped_means_sample_and_census_weighted_match_statsmodels(
    store: DataStore, input_frame: pd.DataFrame
) -> None:
    """Mean hours per week by race and gender: Student-t intervals (DescrStatsW), then the
    census-weighted means with Kish's effective sample size (weights rescaled to n_eff)."""
    from statsmodels.stats.weightstats import DescrStatsW

    view = _visualize(store, workclass=["Private"])
    view.param.update(chart_type="grouped", x="race", group="gender", measure="mean_hours")
    subset = frame_filter(input_frame, view.filters)
    assert view.result.spec.subject() == "Mean hours per week by race and gender (sample)"
    sample = view.result.data.set_index(["race", "gender"])
    view.weighted = True
    assert view.result.spec.subject() == "Mean hours per week by race and gender (census-weighted)"
    weighted = view.result.data.set_index(["race", "gender"])
    for key, part in subset.groupby(["race", "gender"]):
        hours, w = part["hours_per_week"].to_numpy(float), part["fnlwgt"].to_numpy(float)
        plain = DescrStatsW(hours)
        assert sample.loc[key, "mean_hours"] == pytest.approx(plain.mean)
        assert (sample.loc[key, "ci_low"], sample.loc[key, "ci_high"]) == pytest.approx(plain.tconfint_mean(0.05))
        n_eff = w.sum() ** 2 / (w**2).sum()
        census = DescrStatsW(hours, weights=w * n_eff / w.sum())
        assert weighted.loc[key, "mean_hours"] == pytest.approx(np.average(hours, weights=w))
        assert (weighted.loc[key, "ci_low"], weighted.loc[key, "ci_high"]) == pytest.approx(census.tconfint_mean(0.05))
        assert weighted.loc[key, "people"] == len(part)
    assert "census-weighted (fnlwgt" in view.result.footnote


def test_faded_bars_are_the_unreliable_groups_where_drawn(store: DataStore, input_frame: pd.DataFrame) -> None:
    """Grouped bars: the bar drawn for (race, income) is faded and hatched exactly when that
    group has fewer than 30 people (HoloViews reorders grouped bars, so this is checked on
    what Bokeh draws), and carries its interval as a whisker."""
    import holoviews as hv

    view = _visualize(store, gender=["Female"], age=(40, 100))
    view.param.update(chart_type="grouped", x="race", group="income", measure="mean_age")
    subset = frame_filter(input_frame, view.filters)
    sizes = subset.groupby(["race", "income"]).size()
    figure = hv.render(view.result.chart, backend="bokeh")
    bars = figure.renderers[0].data_source.data
    for (race, income), alpha, hatch in zip(bars["xoffsets"], bars["fade_alpha"], bars["fade_hatch"], strict=True):
        small = sizes[(race, income)] < 30
        assert (alpha < 1, hatch.strip() != "") == (small, small), (race, income)
    assert any(alpha < 1 for alpha in bars["fade_alpha"])
    # The legend shows each income as a reliable bar looks, not as its first (faded) bar.
    legend = {item.label["value"]: item.index for item in figure.legend[0].items}
    assert set(legend) == {"<=50K", ">50K"}
    assert all(bars["fade_alpha"][index] == 1 and bars["income"][index] == name for name, index in legend.items())
    whiskers = [a for a in figure.center if type(a).__name__ == "Whisker"]
    assert len(whiskers) == 1
    drawn = whiskers[0].source.data
    data = view.result.data.set_index(["race", "income"])
    for base, low, high in zip(drawn["base"], drawn["lower"], drawn["upper"], strict=True):
        assert (low, high) == pytest.approx((data.loc[tuple(base), "ci_low"], data.loc[tuple(base), "ci_high"]))


def test_hide_small_groups_sort_by_value_and_footnote(store: DataStore, input_frame: pd.DataFrame) -> None:
    view = _visualize(store, gender=["Female"], age=(40, 100), education=["Bachelors"])
    view.param.update(chart_type="bar", x="occupation", measure="share_over_50k")
    shown = view.result
    assert shown.faded > 0 and shown.hidden == 0
    assert shown.footnote == (
        "95% intervals (Wilson score); sample estimates (unweighted); "
        "faded: fewer than 30 people or a relative standard error above 30%; source: UCI Adult, 1994 CPS"
    )
    view.param.update(hide_small=True, order="value")
    hidden = view.result
    assert hidden.hidden == shown.faded and hidden.faded == 0
    kept = shown.data[shown.data["reliable"]]
    assert sorted(hidden.data["occupation"]) == sorted(kept["occupation"])
    values = hidden.data["share_over_50k"].tolist()
    assert values == sorted(values, reverse=True) and len(values) > 2
    assert f"hidden: {hidden.hidden} groups with fewer than 30 people" in hidden.footnote
    assert "faded" not in hidden.footnote
    # The 90% level: narrower intervals, and the footnote says so.
    view.param.update(hide_small=False, order="category", confidence=0.90)
    narrower = view.result.data.set_index("occupation")
    wider = shown.data.set_index("occupation")
    assert ((narrower["ci_high"] - narrower["ci_low"]) < (wider["ci_high"] - wider["ci_low"])).all()
    assert view.result.footnote.startswith("90% intervals")
    # Counts have no interval and no weights: the switch does not apply, the flag is n alone.
    view.param.update(measure="people", confidence=0.95)
    counts = view.result
    assert counts.spec.subject() == "Number of people by occupation"
    assert counts.footnote == "faded: fewer than 30 people; source: UCI Adult, 1994 CPS"
    subset = frame_filter(input_frame, view.filters).fillna({"occupation": "Unknown"})
    small = {k for k, v in subset["occupation"].value_counts().items() if v < 30}
    assert set(counts.data.loc[~counts.data["reliable"], "occupation"]) == small


def test_thresholds_come_from_the_settings(
    store: DataStore, input_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELIABILITY_MIN_N", "100")
    clear_cache()
    try:
        view = _visualize(store, race=["Black"])
        view.param.update(chart_type="bar", x="marital_status", measure="people")
        subset = frame_filter(input_frame, view.filters)
        small = {k for k, v in subset["marital_status"].value_counts().items() if v < 100}
        assert small and set(view.result.data.loc[~view.result.data["reliable"], "marital_status"]) == small
        assert "fewer than 100 people" in view.result.footnote
    finally:
        monkeypatch.delenv("RELIABILITY_MIN_N")
        clear_cache()


def test_line_band_points_and_table(store: DataStore, input_frame: pd.DataFrame) -> None:
    """A share over age: a band per line, a point per age whose tooltip gives n and the
    interval; the chart's table has group, n, estimate, interval and flag."""
    import holoviews as hv

    from explorer.visualize import chart_table, chart_text_alternative

    view = _visualize(store, gender=["Male"])
    view.param.update(chart_type="line", measure="share_over_50k")
    figure = hv.render(view.result.chart, backend="bokeh")
    band, line, points = figure.renderers
    assert [type(r.glyph).__name__ for r in (band, line, points)] == ["Patch", "Line", "Scatter"]
    hover = [t for t in figure.tools if type(t).__name__ == "HoverTool"]
    tips = dict(hover[0].tooltips)
    assert tips["People (n)"] == "@{people}{0,0}" and tips["95% interval"] == "@{interval}"
    subset = frame_filter(input_frame, view.filters)
    drawn = points.data_source.data
    sizes = subset["age"].value_counts()
    for age, n, fill in zip(drawn["age"], drawn["people"], drawn["fade_fill"], strict=True):
        assert n == sizes[age] and (fill == 0) == (not bool(view.result.data.set_index("age").loc[age, "reliable"]))
    table = chart_table(view.result)
    assert list(table.columns) == ["Age", "People (n)", "Share earning >50K (%)", "95% interval", "Flag"]
    assert len(table) == subset["age"].nunique()
    assert "fewer than 30 people" in set(table["Flag"])
    assert "95% interval" in chart_text_alternative(view.result)


def test_chart_data_csv_and_exported_footnote(store: DataStore, input_frame: pd.DataFrame) -> None:
    from explorer.visualize import chart_csv, export_chart

    view = _visualize(store, gender=["Female"], age=(40, 100), education=["Bachelors"])
    view.param.update(chart_type="bar", x="occupation", measure="share_over_50k", weighted=True)
    csv = pd.read_csv(io.BytesIO(chart_csv(view.result)), keep_default_na=False, na_values=[""])
    assert list(csv.columns) == [
        "occupation", "n", "share_over_50k_weighted", "share_over_50k_weighted_se",
        "share_over_50k_weighted_ci_low", "share_over_50k_weighted_ci_high", "share_over_50k_weighted_reliable",
    ]  # fmt: skip
    subset = frame_filter(input_frame, view.filters)
    assert csv["occupation"].isna().sum() == 1  # the missing occupation: an empty field
    for occupation, part in subset.fillna({"occupation": ""}).groupby("occupation"):
        row = csv[csv["occupation"].fillna("") == occupation].iloc[0]
        w = part["fnlwgt"].to_numpy(float)
        assert row["n"] == len(part)
        assert row["share_over_50k_weighted"] == pytest.approx(w[part["income"].to_numpy() == ">50K"].sum() / w.sum())
    figure = export_chart(view.result)
    below = " ".join(t.text for t in figure.below if hasattr(t, "text"))
    assert below == view.result.footnote and "census-weighted" in below and "source: UCI Adult, 1994 CPS" in below
    assert figure.title.text.startswith("Share earning >50K (%) by occupation (census-weighted)")


def test_chart_options_in_the_url(store: DataStore) -> None:
    from explorer.app import ExplorerApp

    spec = ChartSpec("bar", "race", None, "mean_age", weighted=True, order="value", hide_small=True, confidence=0.99)
    params = spec.to_params()
    assert params["weighted"] == ["true"] and params["order"] == ["value"] and params["small"] == ["hide"]
    assert params["confidence"] == ["0.99"]
    assert ChartSpec.from_params(params) == spec
    assert "weighted" not in ChartSpec().to_params() and "confidence" not in ChartSpec().to_params()
    assert ChartSpec.from_params({"confidence": ["0.5"], "order": ["random"]}) == ChartSpec()
    app = ExplorerApp(store, {"tab": ["visualize"], **params})
    assert app.visualize.spec == spec
    app.visualize.param.update(hide_small=False, confidence=0.95)
    assert "small" not in app.url_params() and app.url_params()["weighted"] == ["true"]


def test_the_session_has_one_filter_and_the_url_holds_every_tab(store: DataStore, input_frame: pd.DataFrame) -> None:
    """A filter set in Visualize is Export's and Browse's when they are opened; the URL
    keeps the chart, Browse's table state and Export's format and columns together."""
    from explorer.app import ExplorerApp

    app = ExplorerApp(store, {"tab": ["visualize"], "format": ["Parquet"], "sort": ["age"]})
    app.visualize.filters.gender = ["Female"]
    app.tabs.active = 2  # Export
    assert app.export.filters.people_filter == PeopleFilter(categories={"gender": ("Female",)})
    assert app.export.rows == int((input_frame["gender"] == "Female").sum())
    assert app.export.fmt == "Parquet"
    app.export.filters.race = ["Black"]
    app.tabs.active = 0  # Browse: the people view shows only the filtered people
    expected = input_frame[(input_frame["gender"] == "Female") & (input_frame["race"] == "Black")]
    assert app.browse.tabulator.total_rows == len(expected)
    assert app.browse.tabulator.value["age"].iloc[0] == f"{expected['age'].min():,}"  # sorted by age
    params = app.url_params()
    assert params["gender"] == ["Female"] and params["race"] == ["Black"] and params["format"] == ["Parquet"]
    assert params["chart"] == ["bar"] and params["sort"] == ["age"] and params["tab"] == ["browse"]


def test_filter_panel_data_bounds_facets_and_number_boxes(store: DataStore, input_frame: pd.DataFrame) -> None:
    panel = FilterPanel(store=store)
    assert panel.bounds_of("age") == (input_frame["age"].min(), input_frame["age"].max())
    assert panel.people_filter == PeopleFilter()  # the data's full extent does not filter
    panel.__panel__()
    low_box, high_box = panel.number_boxes["hours_per_week"]
    low_box.value = 20
    assert panel.hours_per_week[0] == 20 and panel.people_filter.ranges["hours_per_week"] == (20, None)
    panel.hours_per_week = (30, 50)
    assert (low_box.value, high_box.value) == (30, 50)
    panel.gender = ["Female"]
    hours = input_frame["hours_per_week"].between(30, 50)
    assert panel.choices["gender"].counts["Male"] == int((hours & (input_frame["gender"] == "Male")).sum())
    assert panel.choices["race"].counts["White"] == int(
        (hours & (input_frame["gender"] == "Female") & (input_frame["race"] == "White")).sum()
    )
    # A link's bound outside the data (within the domain) keeps its meaning.
    panel.set_filter(PeopleFilter(ranges={"age": (None, 16)}))
    assert panel.people_filter.ranges["age"] == (None, 16)


def test_cross_filter_picks() -> None:
    from explorer.crossfilter import apply_pick, describe_pick, pick_for, range_pick

    assert pick_for("race", ["White", "Unknown", "White"]) == {"race": ["White", None]}
    assert pick_for("age_band", ["25-34", "35-44"]) == {"age": (25, 44)}
    assert pick_for("age_band", ["65+"]) == {"age": (65, 100)}  # the domain's top: no upper bound
    assert pick_for("education_num", ["13"]) == {"education_num": (13, 13)}
    assert range_pick("age", 29.5, 30.5) == {"age": (30, 30)}
    assert range_pick("fnlwgt", 10_000.4, 10_000.6) == {"fnlwgt": (10_000, 10_000)}
    narrowed = apply_pick(PeopleFilter(categories={"gender": ("Female",)}), {"race": ["Black"], "age": (30, 40)})
    assert narrowed == PeopleFilter(ranges={"age": (30, 40)}, categories={"gender": ("Female",), "race": ("Black",)})
    assert describe_pick({"race": ["Black", None], "age": (30, 30)}) == "Race: Black, Unknown · Age 30"


def test_cross_filter_click_adds_a_chip_that_removes_it(store: DataStore) -> None:
    from explorer.crossfilter import CrossFilter

    view = _visualize(store, gender=["Female"])
    cross = CrossFilter(view)
    spec = view.spec  # bars of education
    cross.picked(cross.tapped(spec, view.result.data, "Bachelors", 10.0))
    assert view.filters.people_filter.categories["education"] == ("Bachelors",)
    assert view.filters.chips.visible and len(cross.chips) == 1
    cross.remove(cross.chips[0])
    assert "education" not in view.filters.people_filter.categories and not cross.chips
    assert view.filters.people_filter.categories["gender"] == ("Female",)
    histogram = ChartSpec("histogram", "age", None, "people")
    view.set_spec(histogram)
    cross.picked(cross.boxed(histogram, view.result.data, {"x_selection": (29.6, 40.2)}))
    assert view.filters.people_filter.ranges["age"] == (30, 40)
    view.filters.age = (20, 50)  # changed by hand: the chip no longer says what is filtered
    assert not cross.chips


@pytest.mark.parametrize(
    "spec",
    [
        ChartSpec("bar", "education", None, "mean_age"),  # bars with error bars: an overlay
        ChartSpec("grouped", "race", "income", "share_over_50k"),
        ChartSpec("line", "age", "gender", "share_over_50k"),
        ChartSpec("histogram", "age", "gender", "people"),
        ChartSpec("box", "age", "gender", "people"),
    ],
    ids=lambda spec: spec.kind,
)
def test_cross_filter_tools_render_on_every_chart(store: DataStore, spec: ChartSpec) -> None:
    """The pick tools go on layers Bokeh can hover: error bars (a Whisker, no glyph
    renderer) once made the server fail with HoverTool.renderers [None]."""
    import holoviews as hv

    from explorer.crossfilter import CrossFilter

    view = _visualize(store)
    cross = CrossFilter(view)
    view.set_spec(spec)
    chart = cross.attach(view.result.chart, view.result)
    figure = hv.render(chart, backend="bokeh")
    assert any(type(tool).__name__ == "TapTool" for tool in figure.tools)
    assert cross.x_range is figure.x_range  # the hook ran


def test_nested_factor_at_follows_bokeh_s_layout() -> None:
    """Bokeh's two-level layout: one unit per bar, group_padding between groups."""
    from explorer.crossfilter import nested_factor_at

    factors = [("Black", "<=50K"), ("Black", ">50K"), ("White", "<=50K"), ("White", ">50K")]
    # Centres: 0.5, 1.5, then 1.4 of padding: 3.4 + 0.5 = 3.9 and 4.9.
    assert nested_factor_at(factors, 0.7, 1.4, 0.0) == ("Black", "<=50K")
    assert nested_factor_at(factors, 1.9, 1.4, 0.0) == ("Black", ">50K")
    assert nested_factor_at(factors, 3.6, 1.4, 0.0) == ("White", "<=50K")
    assert nested_factor_at(factors, 5.2, 1.4, 0.0) == ("White", ">50K")


def _figure_on_screen(view: VisualizeView) -> Any:
    """The Bokeh figure the view's chart pane shows (one browser: one root)."""
    ((plot, _pane),) = view._plot._plots.values()
    return plot.state


def test_a_filter_change_is_drawn_into_the_figure_on_screen(store: DataStore, input_frame: pd.DataFrame) -> None:
    """Same chart, new filter: the figure on screen takes the new numbers (no new figure
    sent to the browser); a new chart choice gets a new figure."""
    from bokeh.document import Document

    from explorer.crossfilter import CrossFilter

    view = _visualize(store)
    CrossFilter(view)
    view.param.update(chart_type="bar", x="education", measure="people")
    pn.panel(view).get_root(Document())
    figure = _figure_on_screen(view)
    view.filters.gender = ["Female"]
    assert _figure_on_screen(view) is figure
    (bars,) = [r for r in figure.renderers if type(r.glyph).__name__ == "VBar"]
    shown = dict(zip(bars.data_source.data["education"], bars.data_source.data["people"], strict=True))
    expected = input_frame[input_frame["gender"] == "Female"]["education"].value_counts().to_dict()
    assert shown == expected
    assert figure.y_range.end < input_frame["education"].value_counts().max()  # the axis fits the new bars
    view.measure = "mean_age"
    assert _figure_on_screen(view) is not figure


def test_grouped_bars_redrawn_in_place_keep_one_whisker_set_and_true_legend(store: DataStore) -> None:
    """The hooks run again on each result drawn into a figure: the error bars are
    replaced (not added to), and each legend entry points at a reliable row of the
    new data."""
    from bokeh.document import Document

    view = _visualize(store)
    view.set_spec(ChartSpec("grouped", "race", "income", "share_over_50k"))
    view.param.update(chart_type="grouped", x="race", group="gender", measure="share_over_50k")
    pn.panel(view).get_root(Document())
    figure = _figure_on_screen(view)
    for ages in ((17, 40), (41, 90), (25, 30)):
        view.filters.age = ages
        assert _figure_on_screen(view) is figure
        whiskers = [a for a in figure.center if getattr(a, "name", None) == "interval-whiskers"]
        assert len(whiskers) == 1
        finite = view.result.data[["ci_low", "ci_high"]].notna().all(axis=1).sum()
        assert len(whiskers[0].source.data["base"]) == finite
        (bars,) = [r for r in figure.renderers if type(r.glyph).__name__ == "VBar"]
        source = bars.data_source.data
        for item in figure.legend[0].items:
            rows = [i for i, name in enumerate(source["gender"]) if name == item.label.value]
            assert item.index in rows
            if any(source["reliable"][i] for i in rows):
                assert source["reliable"][item.index]
