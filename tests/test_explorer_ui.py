"""Browser tests of the explorer's second pass (issue 15): each defect fixed and each
capability, on a real `panel serve` driven by Playwright in Debian's Chromium.

The accessibility check runs axe-core from the npm registry (`make axe` installs it
into tests/.axe; nothing is downloaded while the tests run)."""

from __future__ import annotations

import io
import json
import re
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from devtools.reference import people_mask
from devtools.servers import ServerProcess, free_port
from explorer.readonly import missing_file_message
from explorer.serve import serve_command, serve_environment
from explorer.store import DataStore
from explorer.visualize import TITLE_SEPARATOR, ChartSpec, title_lines
from tests import test_explorer_browser as first_suite
from tests.test_explorer_browser import ROOT, choose, control, eventually, headers, shown_number

pytestmark = pytest.mark.browser

# The first browser suite's fixtures: a served explorer on the census file, Chromium, a page.
server = first_suite.server
browser = first_suite.browser
page = first_suite.page

AXE = ROOT / "tests" / ".axe" / "node_modules" / "axe-core" / "axe.min.js"
TODAY = date.today().isoformat()
# A heatmap whose title (subject, six filters and a count) is far wider than the chart.
LONG_TITLE_VIEW = (
    "?tab=visualize&chart=heatmap&x=native_country&group=occupation&measure=people"
    "&gender=Female&race=White&race=Black&workclass=Private&workclass=Self-emp-inc&workclass=Local-gov"
    "&marital_status=Divorced&marital_status=Never-married&age_min=25&age_max=60&hours_min=20&hours_max=60"
)


def wait_for_chart(page) -> None:  # type: ignore[no-untyped-def]
    page.get_by_text("people match").wait_for()
    page.locator(".chart-title").first.wait_for()


def chart_box(page, url: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Open `url`, wait for its chart and give the chart canvas' box (for clicks and drags on it)."""
    page.goto(url)
    wait_for_chart(page)
    box = page.locator(".chart canvas").first.bounding_box()
    assert box is not None
    return box  # type: ignore[no-any-return]


def selected_text(select) -> str:  # type: ignore[no-untyped-def]
    return select.evaluate("s => s.options[s.selectedIndex] ? s.options[s.selectedIndex].text : ''")


def download(page, button_name: str, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    with page.expect_download(timeout=90_000) as info:
        page.get_by_role("button", name=re.compile(button_name)).click()
    target = tmp_path / info.value.suggested_filename
    info.value.save_as(target)
    return target


# --------------------------------------------------------------------------- defects


def test_browse_headings_people_counts_and_empty_table(server: str, page, input_frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    """Defects 1 and 11: id columns say whose id; a dimension shows its attribute's
    name and how many people each label covers; an empty table says so."""
    from playwright.sync_api import expect

    page.goto(f"{server}?table=race")
    page.get_by_text("Races: 5 rows").wait_for()
    assert headers(page) == ["Race id", "Race", "People"]
    cells = page.locator(".tabulator-row")
    expect(cells).to_have_count(5)
    shown = {}
    for row in cells.all():
        label = row.locator(".tabulator-cell[tabulator-field=label]").inner_text().strip()
        shown[label] = int(row.locator(".tabulator-cell[tabulator-field=people]").inner_text().replace(",", ""))
    assert shown == input_frame["race"].value_counts().to_dict()

    control(page, "Table").select_option(label="Uploads")
    page.get_by_text("Uploads: 1 row").wait_for()
    eventually(lambda: headers(page)[:2] == ["Upload id", "Source name"], lambda: headers(page))

    control(page, "Table").select_option(label="Rejected rows")
    page.get_by_text("Rejected rows: 0 rows").wait_for()
    expect(page.locator(".empty-table")).to_contain_text("No rejected rows")
    # No grid on screen (a hidden Tabulator may keep the last table's row in the DOM).
    expect(page.locator(".tabulator-row:visible")).to_have_count(0)


def test_browse_pager_in_view_columns_fill_and_labels_whole(server: str, browser) -> None:  # type: ignore[no-untyped-def]
    """Defect 11: on a 1280 x 720 window the pager shows without scrolling, the
    columns fill the width, and no label is cut."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    try:
        page.goto(server)
        page.locator(".row-count", has_text="People (readable view)").wait_for()
        pager = page.locator(".tabulator-paginator").first
        pager.wait_for()
        box = pager.bounding_box()
        assert box is not None and box["y"] + box["height"] <= 720, box
        assert page.evaluate("window.scrollY") == 0
        cut = page.evaluate(
            """() => {
              const found = [];
              const visit = (root) => {
                for (const el of root.querySelectorAll('*')) {
                  if (el.shadowRoot) visit(el.shadowRoot);
                  if (el.classList && el.classList.contains('tabulator-cell') && el.scrollWidth > el.clientWidth + 1)
                    found.push(el.textContent);
                }
              };
              visit(document);
              return found;
            }"""
        )
        assert cut == [], cut
        page.goto(f"{server}?table=gender")
        page.get_by_text("Genders: 2 rows").wait_for()
        table = page.locator(".tabulator").first.bounding_box()
        last = page.locator(".tabulator-col").last.bounding_box()
        assert table and last and abs((last["x"] + last["width"]) - (table["x"] + table["width"])) < 4, (table, last)
    finally:
        context.close()


def test_long_title_wraps_on_screen_and_in_the_exported_image(server: str, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Defect 2: the whole title shows on screen (subject, then the filters and the
    count in a subtitle that wraps) and in the PNG, on several lines inside the image."""
    import numpy as np
    from PIL import Image

    page.goto(server + LONG_TITLE_VIEW)
    wait_for_chart(page)
    subject = page.locator(".chart-title").first.inner_text()
    subtitle = page.locator(".chart-subtitle").first.inner_text()
    assert subject == "Number of people by native country and occupation"
    for part in ("Gender: Female", "Work class: Private, Self-emp-inc, Local-gov", "Hours per week 20–60", "people)"):
        assert part in subtitle, subtitle
    overflow = page.locator(".chart-subtitle").first.evaluate("el => el.scrollWidth - el.clientWidth")
    assert overflow <= 1

    png = download(page, "Download PNG", tmp_path)
    image = np.asarray(Image.open(png).convert("L"))
    band = image[:78]  # above the plot frame: the title's three lines at this size
    dark_rows = (band < 110).any(axis=1)
    lines = int(np.count_nonzero(dark_rows[1:] & ~dark_rows[:-1]) + dark_rows[0])
    assert lines >= 3, lines
    assert not (band[:, -8:] < 110).any(), "the title runs into the image's right edge"

    # The lines drawn are the whole title, word for word.
    full = subject + TITLE_SEPARATOR + subtitle[0].lower() + subtitle[1:]
    subject_lines, who_lines = title_lines(full, 1000)
    assert " ".join(subject_lines) == subject and " ".join(who_lines) == subtitle


def test_stacked_bars_refuse_measures_that_do_not_add_up(server: str, page) -> None:  # type: ignore[no-untyped-def]
    """Defects 3 and 8: a share stacked by race is refused in words; with no chart the
    download buttons are disabled."""
    from playwright.sync_api import expect

    page.goto(f"{server}?tab=visualize&chart=stacked&x=education&group=race&measure=share_over_50k")
    expect(page.locator(".chart-message")).to_contain_text("cannot be stacked")
    expect(page.get_by_role("button", name="Download PNG")).to_be_disabled()
    expect(page.get_by_role("button", name="Download JPG")).to_be_disabled()
    control(page, "Measure").select_option(label="Population represented (sum of fnlwgt)")
    wait_for_chart(page)
    expect(page.get_by_role("button", name="Download PNG")).to_be_enabled()


def test_back_and_forward_restore_the_page(server: str, page) -> None:  # type: ignore[no-untyped-def]
    """Defect 4: Back changes the page, not only the URL."""
    from playwright.sync_api import expect

    page.goto(f"{server}?tab=visualize")
    wait_for_chart(page)
    control(page, "Measure").select_option(label="Mean age")
    expect(page).to_have_url(re.compile(r"measure=mean_age"))
    expect(page.locator(".chart-title").first).to_have_text("Mean age by education (sample)")
    page.go_back()
    expect(page).not_to_have_url(re.compile(r"measure=mean_age"))
    expect(page.locator(".chart-title").first).to_have_text("Number of people by education")
    assert selected_text(control(page, "Measure")) == "Number of people"
    page.go_forward()
    expect(page.locator(".chart-title").first).to_have_text("Mean age by education (sample)")
    assert selected_text(control(page, "Measure")) == "Mean age"


def test_quick_slider_key_presses_are_not_lost(server: str, page) -> None:  # type: ignore[no-untyped-def]
    """Defect 5: 30 quick presses move the handle 30 steps, whatever the server answers meanwhile."""
    from playwright.sync_api import expect

    for _trial in range(2):
        page.goto(f"{server}?tab=visualize")
        wait_for_chart(page)
        handle = page.locator(".noUi-handle-upper:visible").first
        start = round(float(handle.get_attribute("aria-valuenow") or 0))  # the data's oldest age
        assert start > 40, start
        handle.focus()
        for _ in range(30):
            page.keyboard.press("ArrowLeft")
            page.wait_for_timeout(25)
        expect(page).to_have_url(re.compile(rf"age_max={start - 30}(&|$)"))
        page.wait_for_timeout(1500)  # any late answer from the server has arrived
        assert float(handle.get_attribute("aria-valuenow") or 0) == start - 30


def test_group_select_and_placeholder(server: str, page) -> None:  # type: ignore[no-untyped-def]
    """Defect 6: Group shows "(none)" on first load; "Everyone" hides once a value is chosen."""
    page.goto(f"{server}?tab=visualize")
    wait_for_chart(page)
    assert selected_text(control(page, "Group / colour by")) == "(none)"
    choose(page, "Gender", "Female")
    page.get_by_text("Gender: Female").first.wait_for()

    def placeholder_colour(label: str) -> str:
        box = control(page, label, "input[type=search]")
        return box.evaluate("el => getComputedStyle(el, '::placeholder').color")

    eventually(lambda: placeholder_colour("Gender") == "rgba(0, 0, 0, 0)", lambda: placeholder_colour("Gender"))
    assert placeholder_colour("Race") != "rgba(0, 0, 0, 0)"


def test_measure_disabled_where_it_does_not_apply_and_file_names(server: str, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Defect 9: no Measure for histograms and box plots; file names say what the chart shows."""
    from playwright.sync_api import expect

    page.goto(f"{server}?tab=visualize&chart=box&x=age&group=race")
    wait_for_chart(page)
    expect(control(page, "Measure")).to_be_disabled()
    name = download(page, "Download PNG", tmp_path).name
    assert name == f"census-box-plot-age-quartiles-by-race-{TODAY}.png"
    control(page, "Chart type").select_option(label="Line over age")
    expect(control(page, "Measure")).to_be_enabled()
    control(page, "Measure").select_option(label="Mean hours per week")
    expect(page.locator(".chart-title").first).to_have_text("Mean hours per week over age, by race (sample)")
    name = download(page, "Download JPG", tmp_path).name
    assert name == f"census-line-mean-hours-per-week-over-age-by-race-sample-{TODAY}.jpg"
    assert ChartSpec("line", "age", None, "mean_age").filename("png").count("age") == 2  # mean age, over age


def test_export_formats_agree(server: str, page, input_frame: pd.DataFrame, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Defect 10: JSON is one array in a .json file; every format has the same headers;
    a long filter stays whole in the file name."""
    from openpyxl import load_workbook

    countries = "&".join(f"native_country={c}" for c in ("Cuba", "Jamaica", "India", "Mexico", "Canada", "England"))
    page.goto(
        f"{server}?tab=export&gender=Female&{countries}&marital_status=Never-married&relationship=Own-child&age_max=30"
    )
    page.get_by_text("will be exported").wait_for()
    csv_path = download(page, "Download CSV", tmp_path)
    page.locator(".bk-btn", has_text="JSON").click()
    json_path = download(page, "Download JSON", tmp_path)
    page.locator(".bk-btn", has_text="Excel").click()
    excel_path = download(page, "Download Excel", tmp_path)

    csv = pd.read_csv(csv_path)
    rows = json.loads(json_path.read_text())
    assert json_path.suffix == ".json" and isinstance(rows, list) and len(rows) == len(csv) > 0
    sheet = load_workbook(excel_path, read_only=True).active
    excel_headers = [cell.value for cell in next(sheet.iter_rows(max_row=1))]
    assert list(rows[0]) == list(csv.columns) == excel_headers
    expected = input_frame[
        (input_frame["gender"] == "Female")
        & input_frame["native_country"].isin(["Cuba", "Jamaica", "India", "Mexico", "Canada", "England"])
        & (input_frame["marital_status"] == "Never-married")
        & (input_frame["relationship"] == "Own-child")
        & (input_frame["age"] <= 30)
    ]
    assert len(csv) == len(expected)
    stem = csv_path.name.removeprefix("census-people_").split("_")[0]
    # 120 characters of filter, kept whole (the old names were cut at 80, mid-filter).
    assert stem == (
        "gender-female-marital-status-never-married-relationship-own-child"
        "-native-country-cuba-jamaica-india-mexico-canada-england-age-30"
    ), stem


def test_browse_state_lives_in_the_url(server: str, page) -> None:  # type: ignore[no-untyped-def]
    """Browse's table, columns, sort and page are in the URL, and a link restores them."""
    from playwright.sync_api import expect

    page.goto(server)
    page.locator(".row-count", has_text="People (readable view)").wait_for()
    for title in ("Person id", "Work class", "Census weight (fnlwgt)", "Education"):
        page.get_by_role("button", name=f"Remove item: '{title}'", exact=True).click()
    expect(page).to_have_url(re.compile(r"columns=age%2Ceducation_num%2C"))
    page.locator(".tabulator-col", has_text="Age").first.click()
    expect(page).to_have_url(re.compile(r"sort=age"))
    page.locator("button.tabulator-page[data-page=next]").click()
    expect(page).to_have_url(re.compile(r"page=2"))
    link = page.url

    def first_row() -> list[tuple[str | None, str]]:
        cells = page.locator(".tabulator-row").first.locator(".tabulator-cell").all()
        return [(c.get_attribute("tabulator-field"), c.inner_text()) for c in cells if c.is_visible()]

    shown = first_row()
    assert shown[0] == ("age", "17"), shown  # sorted by age, page 2: still the youngest
    page.goto(link)
    page.get_by_text("· page 2 of").wait_for()
    assert headers(page)[0] == "Age" and "Person id" not in headers(page)
    eventually(lambda: first_row() == shown, first_row)


def test_column_picker_none_then_two_picks(server: str, page) -> None:  # type: ignore[no-untyped-def]
    """Age and income only: None, then two picks (it took 14 removals)."""
    page.goto(server)
    page.locator(".row-count", has_text="People (readable view)").wait_for()
    page.get_by_role("button", name="None", exact=True).click()
    # As a person would: pick once the picker shows None's answer (it redraws the picker).
    chosen = page.locator(".bk-input-group", has_text="Columns (empty = all)").locator(
        ".choices__list--multiple .choices__item"
    )
    eventually(lambda: chosen.count() == 0, chosen.all_inner_texts)
    choose(page, "Columns (empty = all)", "Age")
    choose(page, "Columns (empty = all)", "Income")
    eventually(lambda: headers(page) == ["Age", "Income"], lambda: headers(page))
    page.get_by_role("button", name="All", exact=True).click()
    eventually(lambda: len(headers(page)) == 16, lambda: headers(page))


def test_console_has_no_choices_warnings(server: str, page) -> None:  # type: ignore[no-untyped-def]
    """Defect 12: no Choices.js allowHTML deprecation warnings in a session over all tabs."""
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    page.goto(server)
    page.locator(".row-count", has_text="People (readable view)").wait_for()
    page.get_by_role("tab", name="Visualize").click()
    wait_for_chart(page)
    choose(page, "Gender", "Female")  # a tab shown after the first is usable (not left inert)
    page.get_by_text("Gender: Female").first.wait_for()
    page.get_by_role("tab", name="Export").click()
    page.get_by_text("will be exported").wait_for()
    assert not [m for m in messages if "allowHTML" in m]


def test_missing_sqlite_file_is_reported_not_created(tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    """Defect 7: a missing file gets a clear banner and is not created; the explorer
    opens an existing file read-only."""
    missing = tmp_path / "nowhere" / "census.db"
    port = free_port()
    env = serve_environment(DATABASE_URL=f"sqlite:///{missing}", EXPLORER_WARM_BROWSER="0")
    server = ServerProcess(serve_command(port, address="127.0.0.1"), port, env=env, log=tmp_path / "serve.log")
    with server:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{server.base_url}/app")
        message = page.get_by_text(re.compile("does not exist"))
        message.wait_for()
        assert str(missing) in message.inner_text()
        assert page.get_by_text(re.compile("holds no people")).count() == 0
        context.close()
    assert not missing.exists() and not missing.parent.exists()
    assert "Traceback" not in server.output


def test_explorer_engine_is_read_only(sqlite_census_url: str, tmp_path: Path) -> None:
    engine = DataStore(url=sqlite_census_url).engine  # shared per URL: not disposed here
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM person")).scalar() > 0
        with pytest.raises(OperationalError, match="readonly"):
            connection.execute(text("DELETE FROM gender"))
    assert missing_file_message(f"sqlite:///{tmp_path / 'no.db'}", "load it") is not None
    assert missing_file_message(sqlite_census_url, "load it") is None


# --------------------------------------------------------------------------- capabilities


def test_dark_theme_switch(server: str, page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    def background() -> list[int]:
        colour = page.evaluate("getComputedStyle(document.body).backgroundColor")
        return [int(v) for v in re.findall(r"\d+", colour)[:3]]

    page.goto(f"{server}?tab=visualize")
    wait_for_chart(page)
    assert sum(background()) > 600  # light
    page.get_by_role("button", name="Dark theme").click()
    expect(page).to_have_url(re.compile(r"theme=dark"))
    wait_for_chart(page)
    assert sum(background()) < 200, background()
    page.get_by_role("tab", name="Browse").click()
    expect(page).to_have_url(re.compile(r"tab=browse.*theme=dark|theme=dark.*tab=browse"))
    page.get_by_role("button", name="Light theme").click()
    expect(page).not_to_have_url(re.compile(r"theme=dark"))


def test_phone_width_has_no_horizontal_scroll(server: str, browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    page = context.new_page()
    try:
        page.goto(f"{server}?tab=visualize&chart=grouped&x=race&group=gender")
        wait_for_chart(page)
        page.wait_for_timeout(800)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        for selector in (".chart-title", "canvas", ".download-png", ".visualize-filters"):
            box = page.locator(selector).first.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 391, (selector, box)
    finally:
        context.close()


def test_aria_roles_labels_text_alternative_and_focus(server: str, page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(f"{server}?tab=visualize&x=race")
    wait_for_chart(page)
    tabs = page.get_by_role("tab")
    expect(tabs).to_have_count(3)
    expect(page.get_by_role("tab", name="Visualize")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("tablist")).to_have_count(1)
    expect(page.get_by_role("slider", name="Age minimum")).to_have_count(1)
    expect(page.get_by_role("slider", name="Age maximum")).to_have_count(1)
    # The chart's numbers as a table: one row per bar.
    page.locator(".chart-data summary").click()
    expect(page.locator(".chart-data table tbody tr")).to_have_count(5)
    # Keyboard: focus shows, and arrows move between tabs.
    page.get_by_role("tab", name="Visualize").focus()
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("tab", name="Browse")).to_have_attribute("aria-selected", "true")
    outline = page.get_by_role("tab", name="Browse").evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline != "none"


@pytest.mark.parametrize("query", ["?tab=browse", "?tab=visualize", "?tab=export", "?tab=visualize&theme=dark"])
def test_axe_finds_no_serious_problems(server: str, page, query: str) -> None:  # type: ignore[no-untyped-def]
    assert AXE.exists(), f"axe-core is missing: run `make axe` (npm install into {AXE.parents[2]})"
    page.goto(server + query)
    if "browse" in query:
        page.locator(".tabulator-row").first.wait_for()
    elif "visualize" in query:
        wait_for_chart(page)
    else:
        page.get_by_text("will be exported").wait_for()
    page.wait_for_timeout(500)
    page.add_script_tag(content=AXE.read_text())
    violations = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
              .filter(v => v.impact === 'serious' || v.impact === 'critical')
              .map(v => `${v.id} (${v.impact}): ${v.nodes.length} x ${v.nodes[0].target.join(' ')}`)"""
    )
    assert violations == []


def test_double_size_image_export(server: str, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    page.goto(f"{server}?tab=visualize")
    wait_for_chart(page)
    page.locator(".export-scale .bk-btn", has_text="2×").click()
    png = download(page, "Download PNG", tmp_path)
    assert Image.open(io.BytesIO(png.read_bytes())).size == (2000, 1120)


# --------------------------------------------------------------------------- how far to trust a number (issue 14)

# "Share of women over 40 with a Bachelors degree earning >50K, by occupation": a few bars stand on a handful of people.
TRUST_FILTER = {"gender": "Female", "age_min": "40", "education": "Bachelors"}
TRUST_VIEW = "?tab=visualize&chart=bar&x=occupation&measure=share_over_50k&" + "&".join(
    f"{k}={v}" for k, v in TRUST_FILTER.items()
)
BAR_BLUE = (59, 110, 165)  # #3b6ea5
FADED_BLUE = tuple(round(255 - 0.3 * (255 - c)) for c in BAR_BLUE)  # the same at alpha 0.3 on white


@pytest.fixture(scope="module")
def api(sqlite_census_url: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The real HTTP API (`python -m api`) on the explorer's database."""
    from tests.test_api_http import live_server

    log = tmp_path_factory.mktemp("api") / "stderr.log"
    with live_server({"DATABASE_URL": sqlite_census_url, "API_RATE_LIMIT": "0"}, log) as base:
        yield base


def colour_mask(image, colour: tuple[int, ...], tolerance: int):  # type: ignore[no-untyped-def]
    import numpy as np

    pixels = np.asarray(image.convert("RGB")).astype(int)
    return (np.abs(pixels - np.array(colour)) <= tolerance).all(axis=2)


def faded_bar_centres(png: bytes) -> list[tuple[int, int]]:
    """(x, y) inside each faded bar of a chart image: runs of columns holding the faded colour."""
    import numpy as np
    from PIL import Image

    mask = colour_mask(Image.open(io.BytesIO(png)), FADED_BLUE, 12)
    columns = np.where(mask.sum(axis=0) > 15)[0]
    if not len(columns):
        return []
    runs = np.split(columns, np.where(np.diff(columns) > 8)[0] + 1)
    centres = []
    for run in runs:
        x = int(run.mean())
        rows = np.where(mask[:, run[0] : run[-1] + 1].any(axis=1))[0]
        centres.append((x, int(np.median(rows))))
    return centres


def csv_equals_api(csv_path: Path, api: str, params: dict[str, str]) -> int:
    """Every CSV column equals the same field of /api/v1/stats, row by row; returns the rows."""
    import httpx
    import numpy as np

    csv = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
    answer = httpx.get(f"{api}/api/v1/stats", params=params, timeout=30)
    assert answer.status_code == 200, answer.text
    groups = answer.json()["groups"]
    assert len(groups) == len(csv) > 0
    for row, group in zip(csv.to_dict("records"), groups, strict=True):
        for column, value in row.items():
            expected = group[column]
            if expected is None:
                assert value is None or (isinstance(value, float) and np.isnan(value)), (column, value)
            elif isinstance(expected, bool):
                assert bool(value) is expected, (column, row)
            elif isinstance(expected, str):
                assert value == expected, (column, row)
            else:
                assert value == pytest.approx(expected, rel=1e-12), (column, row)
    return len(csv)


def test_small_groups_faded_tooltips_image_and_chart_data_equal_the_api(  # type: ignore[no-untyped-def]
    server: str, page, api: str, input_frame: pd.DataFrame, tmp_path: Path
) -> None:
    """Issue 14: a chart with groups of fewer than 30 people draws them faded; the tooltip
    gives n and the interval; the PNG differs from the same chart with small groups hidden;
    the chart-data CSV equals the API's /stats for the same filter (sample and weighted)."""
    import numpy as np
    from PIL import Image
    from playwright.sync_api import expect
    from statsmodels.stats.proportion import proportion_confint

    page.goto(server + TRUST_VIEW)
    wait_for_chart(page)
    expect(page.locator(".chart-title").first).to_have_text("Share earning >50K (%) by occupation (sample)")
    expect(page.locator(".chart-caption")).to_contain_text("faded and hatched: fewer than 30 people")
    subset = input_frame[
        (input_frame["gender"] == "Female") & (input_frame["age"] >= 40) & (input_frame["education"] == "Bachelors")
    ]

    # On screen: faded bars, each with a tooltip giving its n and its interval.
    canvas = page.locator(".chart canvas").first
    box = canvas.bounding_box()
    assert box is not None
    screen = canvas.screenshot()
    assert colour_mask(Image.open(io.BytesIO(screen)), BAR_BLUE, 6).sum() > 1000  # reliable bars at full colour
    centres = faded_bar_centres(screen)
    assert centres, "no faded bar on screen"
    seen = {}
    tip = page.locator(".bk-tooltip-content").first
    for x, y in centres:
        page.mouse.move(box["x"] + 2, box["y"] + 2)  # off the bars: the tooltip goes
        page.mouse.move(box["x"] + x, box["y"] + y)
        expect(tip).to_contain_text("People (n)")
        page.wait_for_timeout(200)
        text = tip.inner_text()
        occupation = re.search(r"Occupation:\s*(\S+)", text).group(1)  # type: ignore[union-attr]
        seen[occupation] = text
    assert len(seen) == len(centres)
    for occupation, text in seen.items():
        part = subset[subset["occupation"].fillna("Unknown") == occupation]
        n, hits = len(part), int((part["income"] == ">50K").sum())
        low, high = proportion_confint(hits, n, alpha=0.05, method="wilson")
        assert re.search(rf"People \(n\):\s*{n}\b", text), text
        assert re.search(rf"95% interval:\s*{low * 100:.1f}% – {high * 100:.1f}%", text), text
        share = hits / n
        rse = np.sqrt(share * (1 - share) / n) / share if share else 0
        assert n < 30 or rse > 0.30, (occupation, n)
    assert any(int(re.search(r"People \(n\):\s*(\d+)", t).group(1)) < 30 for t in seen.values())  # type: ignore[union-attr]

    # The image: faded bars and the footnote; with small groups hidden, neither faded bar nor the same picture.
    shown_png = download(page, "Download PNG", tmp_path).read_bytes()
    page.locator(".hide-small input[type=checkbox]").check()
    expect(page).to_have_url(re.compile(r"small=hide"))
    expect(page.locator(".chart-caption")).to_contain_text("hidden:")
    hidden_png = download(page, "Download PNG", tmp_path).read_bytes()
    assert shown_png != hidden_png
    shown_image, hidden_image = Image.open(io.BytesIO(shown_png)), Image.open(io.BytesIO(hidden_png))
    assert shown_image.size == hidden_image.size == (1000, 560)
    assert colour_mask(shown_image, FADED_BLUE, 12).sum() > 500
    assert colour_mask(hidden_image, FADED_BLUE, 12).sum() < 50
    for image in (shown_image, hidden_image):  # the footnote's line of text under the axis title
        bottom = np.asarray(image.convert("L"))[-30:]
        assert (bottom < 200).sum() > 600
    assert not np.array_equal(np.asarray(shown_image)[-30:], np.asarray(hidden_image)[-30:])  # "faded" / "hidden"

    # The chart's data: the same numbers as the API's /stats, sample then census-weighted.
    page.locator(".hide-small input[type=checkbox]").uncheck()
    expect(page).not_to_have_url(re.compile(r"small=hide"))
    expect(page.locator(".chart-caption")).to_contain_text("faded")
    page.locator(".chart-data summary").click()
    expect(page.locator(".chart-data table tbody tr")).to_have_count(subset["occupation"].nunique(dropna=False))
    params = {**TRUST_FILTER, "group_by": "occupation", "measures": "share_over_50k"}
    sample_csv = download(page, "Download chart data", tmp_path)
    assert sample_csv.name.startswith("census-chart-data-bar-share-earning-50k-by-occupation-sample-")
    assert csv_equals_api(sample_csv, api, params) == subset["occupation"].nunique(dropna=False)
    assert "share_over_50k_ci_low" in sample_csv.read_text().splitlines()[0]

    page.locator(".estimates-switch .bk-btn", has_text="Census-weighted").click()
    expect(page).to_have_url(re.compile(r"weighted=true"))
    expect(page.locator(".chart-title").first).to_have_text("Share earning >50K (%) by occupation (census-weighted)")
    weighted_csv = download(page, "Download chart data", tmp_path)
    assert "share_over_50k_weighted_ci_low" in weighted_csv.read_text().splitlines()[0]
    csv_equals_api(weighted_csv, api, params)


def test_sort_by_value_and_line_bands(server: str, page) -> None:  # type: ignore[no-untyped-def]
    """Bars sorted by value from the URL; a line over age with its band and the options in the URL."""
    from playwright.sync_api import expect

    page.goto(server + TRUST_VIEW + "&order=value&confidence=0.99")
    wait_for_chart(page)
    assert selected_text(control(page, "Sort bars")) == "By value (largest first)"
    assert selected_text(control(page, "Intervals")) == "99% interval"
    page.locator(".chart-data summary").click()
    shares = [
        float(cell.replace("%", ""))
        for cell in page.locator(".chart-data table tbody tr td:nth-child(3)").all_inner_texts()
    ]
    assert len(shares) > 5 and shares == sorted(shares, reverse=True)
    expect(page.locator(".chart-data table thead")).to_contain_text("99% interval")
    control(page, "Chart type").select_option(label="Line over age")
    expect(page.locator(".chart-title").first).to_have_text("Share earning >50K (%) over age (sample)")
    expect(control(page, "Sort bars")).to_be_disabled()
    expect(page.locator(".chart-caption")).to_contain_text("Bands show 99% intervals")


# --------------------------------------------------------------------------- the analyst's workflow


def people_matching(frame: pd.DataFrame, ranges=None, categories=None) -> int:  # type: ignore[no-untyped-def]
    return int(people_mask(frame, ranges, categories).sum())


def shown_count(page, selector: str) -> int:  # type: ignore[no-untyped-def]
    return shown_number(page.locator(selector).first.inner_text())


def test_one_filter_across_the_tabs_and_export_this_subset(server: str, page, input_frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    """A filter chosen in Visualize is Export's and Browse's; "Export this subset"
    opens Export with it; every tab's counts equal pandas; Back returns to the tab."""
    from playwright.sync_api import expect

    women = people_matching(input_frame, {"age": (30, None)}, {"gender": ["Female"]})
    page.goto(f"{server}?tab=visualize&age_min=30")
    wait_for_chart(page)
    choose(page, "Gender", "Female")
    expect(page.locator(".chart-note").first).to_contain_text(f"{women:,} people match")
    page.get_by_role("button", name="Export this subset").click()
    expect(page.get_by_role("tab", name="Export")).to_have_attribute("aria-selected", "true")
    expect(page.locator(".export-count")).to_contain_text(f"{women:,} rows")
    expect(page.locator(".export-count")).to_contain_text("Gender: Female · Age ≥ 30")
    expect(page).to_have_url(re.compile(r"tab=export.*age_min=30.*gender=Female"))

    page.get_by_role("tab", name="Browse").click()
    expect(page.locator(".row-count")).to_contain_text(f"People (readable view): {women:,} rows (Gender: Female")
    expect(page).to_have_url(re.compile(r"tab=browse.*gender=Female"))
    page.go_back()
    expect(page).to_have_url(re.compile(r"tab=export"))
    expect(page.locator(".export-count")).to_contain_text(f"{women:,} rows")


def test_every_tab_s_state_round_trips_through_the_url(server: str, page, input_frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(
        f"{server}?tab=export&format=JSON&export_columns=age,income&race=Black&chart=heatmap&x=education&group=gender"
        "&table=people&sort=-age&page=2"
    )
    black = people_matching(input_frame, categories={"race": ["Black"]})
    expect(page.locator(".export-count")).to_contain_text(f"{black:,} rows will be exported (2 columns, JSON)")
    page.get_by_role("tab", name="Visualize").click()
    wait_for_chart(page)
    expect(page.locator(".chart-title").first).to_have_text("Number of people by education and gender")
    expect(page.locator(".chart-subtitle").first).to_contain_text(f"Race: Black ({black:,} people)")
    # Each tab's URL comes from the server after the click (the tab itself shows at once,
    # drawn in the browser): Back is only tried once the history holds both tabs.
    expect(page).to_have_url(re.compile(r"[?&]tab=visualize(&|$)"))
    page.get_by_role("tab", name="Browse").click()
    expect(page.locator(".row-count")).to_contain_text(f"{black:,} rows (Race: Black) · page 2 of")
    expect(page).to_have_url(re.compile(r"[?&]tab=browse(&|$)"))
    url = page.url
    for part in ("format=JSON", "export_columns=age%2Cincome", "chart=heatmap", "sort=-age", "page=2", "race=Black"):
        assert part in url, (part, url)
    oldest = page.locator(".tabulator-row").first.locator(".tabulator-cell[tabulator-field=age]").inner_text()
    assert int(oldest) == int(input_frame[input_frame["race"] == "Black"]["age"].sort_values(ascending=False).iloc[25])
    page.go_back()
    expect(page.get_by_role("tab", name="Visualize")).to_have_attribute("aria-selected", "true")
    wait_for_chart(page)


def facet_counts_shown(page, label: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """The 'value (people)' options of a category filter, opened as a person would."""
    group = page.locator(".bk-input-group:visible").filter(
        has=page.locator("label", has_text=re.compile(f"^{re.escape(label)}$"))
    )
    group.locator("input[type=search]").click()
    # (Not Choices.js's "No results found" / "No choices to choose from" line.)
    texts = group.locator(".choices__item--choice:not(.has-no-results):not(.has-no-choices)").all_inner_texts()
    page.keyboard.press("Escape")
    found = {}
    if any(not option.strip() for option in texts):
        # Choices.js is re-drawing the list (new counts arrived): a blank item, never a
        # value, so no count to compare; `eventually` looks again, and a check that
        # reads this outside `eventually` fails on it.
        return {"(list being redrawn)": -1}
    for option in texts:
        match = re.fullmatch(r"(.+) \(([\d,]+)\)", option.strip())
        assert match, (label, option, texts)
        found[match.group(1)] = int(match.group(2).replace(",", ""))
    return found


def test_facet_counts_equal_pandas(server: str, page, input_frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    """Each category's values show their people under the OTHER filters, and follow changes."""
    page.goto(f"{server}?tab=visualize&age_min=30&gender=Female")
    wait_for_chart(page)

    def expected(column: str, ranges, categories) -> dict[str, int]:  # type: ignore[no-untyped-def]
        chosen = input_frame[people_mask(input_frame, ranges, categories)]
        counts = chosen[column].value_counts().to_dict()
        if chosen[column].isna().any():
            counts["Unknown"] = int(chosen[column].isna().sum())
        return counts

    def non_zero(found: dict[str, int]) -> dict[str, int]:
        return {k: v for k, v in found.items() if v}

    age = {"age": (30, None)}
    eventually(
        lambda: non_zero(facet_counts_shown(page, "Race")) == expected("race", age, {"gender": ["Female"]}),
        lambda: facet_counts_shown(page, "Race"),
    )
    # Its own choice left out: Male's count is under the age filter only; the chosen
    # Female (not in the list any more) shows its count on its chip.
    genders = expected("gender", age, {})
    assert facet_counts_shown(page, "Gender") == {"Male": genders["Male"]}
    chip = page.locator(".bk-input-group:visible", has_text="Gender").locator(".choices__list--multiple .choices__item")
    assert chip.first.inner_text().startswith(f"Female ({genders['Female']:,})")
    choose(page, "Race", "Black")
    black_genders = expected("gender", age, {"race": ["Black"]})
    eventually(
        lambda: facet_counts_shown(page, "Gender") == {"Male": black_genders["Male"]},
        lambda: facet_counts_shown(page, "Gender"),
    )
    found = facet_counts_shown(page, "Work class")
    assert non_zero(found) == expected("workclass", age, {"gender": ["Female"], "race": ["Black"]})
    assert found["Never-worked"] == 0 or "Never-worked" in expected("workclass", age, {})


def test_number_boxes_follow_the_slider_and_the_data_s_bounds(server: str, page, input_frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(f"{server}?tab=visualize")
    wait_for_chart(page)
    low_box = page.locator(".range-age-min input:visible").first
    high_box = page.locator(".range-age-max input:visible").first
    assert int(low_box.input_value()) == int(input_frame["age"].min())  # 17, not the domain's 16
    assert int(high_box.input_value()) == int(input_frame["age"].max())
    handle = page.get_by_role("slider", name="Age minimum")
    assert float(handle.get_attribute("aria-valuemin") or 0) == input_frame["age"].min()
    low_box.fill("45")
    low_box.press("Enter")
    expect(page).to_have_url(re.compile(r"age_min=45(&|$)"))
    expect(handle).to_have_attribute("aria-valuenow", re.compile(r"^45(\.0+)?$"))
    people = people_matching(input_frame, {"age": (45, None)})
    expect(page.locator(".chart-note").first).to_contain_text(f"{people:,} people match")
    handle.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    expect(page).to_have_url(re.compile(r"age_min=48(&|$)"))
    expect(low_box).to_have_value("48")


def test_columns_have_their_meaning(server: str, page) -> None:  # type: ignore[no-untyped-def]
    """Header tooltips in Browse and Export, and a Columns help panel; education_num is an ordinal code."""
    from playwright.sync_api import expect

    page.goto(server)
    page.locator(".tabulator-row").first.wait_for()
    page.locator(".columns-help summary").first.click()
    help_text = page.locator(".columns-help").first.inner_text()
    assert "Ordinal code of `education`" in help_text and "16 = Doctorate" in help_text
    page.locator(".tabulator-col", has_text="Education years").first.hover()
    expect(page.locator(".tabulator-tooltip")).to_contain_text("Ordinal code")
    page.get_by_role("tab", name="Export").click()
    page.locator(".export-preview .tabulator-col", has_text="Hours per week").first.hover()
    # Browse's tooltip may linger in its hidden tab: look for Export's by its text.
    expect(page.locator(".tabulator-tooltip", has_text="Usual hours worked per week")).to_be_visible()


def test_cross_filter_click_narrows_the_filter(server: str, page, input_frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    """A click on the White bar adds Race: White (count equal to pandas); its chip removes it."""
    from playwright.sync_api import expect

    box = chart_box(page, f"{server}?tab=visualize&x=race&gender=Female")
    # Five bars in label order: White is the last band (right fifth of the plot frame).
    page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.6)
    white = people_matching(input_frame, categories={"gender": ["Female"], "race": ["White"]})
    expect(page.locator(".chart-note").first).to_contain_text(f"{white:,} people match")
    expect(page.locator(".filter-summary:visible").first).to_contain_text("Race: White")
    expect(page).to_have_url(re.compile(r"race=White"))
    chip = page.get_by_role("button", name=re.compile("Chart selection: Race: White"))
    expect(chip).to_be_visible()
    chip.click()
    everyone = people_matching(input_frame, categories={"gender": ["Female"]})
    expect(page.locator(".chart-note").first).to_contain_text(f"{everyone:,} people match")
    expect(chip).to_have_count(0)


def test_phone_width_export_and_browse_have_no_horizontal_scroll(server: str, browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    page = context.new_page()
    try:
        page.goto(f"{server}?tab=export")
        page.get_by_text("will be exported").wait_for()
        page.wait_for_timeout(800)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        box = page.locator(".export-filters").first.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 391, box
    finally:
        context.close()


def test_cross_filter_box_selection_on_a_histogram(server: str, page, input_frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    """Dragging across a histogram of age selects an age range; the count equals pandas."""
    from playwright.sync_api import expect

    box = chart_box(page, f"{server}?tab=visualize&chart=histogram&x=age")
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(box["x"] + box["width"] * 0.35, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, y, steps=5)
    page.mouse.move(box["x"] + box["width"] * 0.55, y, steps=5)
    page.mouse.up()
    expect(page).to_have_url(re.compile(r"age_min=\d+&age_max=\d+"))
    low = int(re.search(r"age_min=(\d+)", page.url).group(1))  # type: ignore[union-attr]
    high = int(re.search(r"age_max=(\d+)", page.url).group(1))  # type: ignore[union-attr]
    assert 17 < low < high < 90, (low, high)
    people = people_matching(input_frame, {"age": (low, high)})
    expect(page.locator(".chart-note").first).to_contain_text(f"{people:,} people match")
    expect(page.get_by_role("button", name=f"✕ Chart selection: Age {low}–{high}")).to_be_visible()


def test_cross_filter_click_on_a_heatmap_cell_picks_both_attributes(
    server: str, page, input_frame: pd.DataFrame
) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    box = chart_box(page, f"{server}?tab=visualize&chart=heatmap&x=race&group=income")
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.3)
    expect(page).to_have_url(re.compile(r"race=[^&]+.*income=[^&]+"))
    query = parse_qs(urlparse(page.url).query)
    race, income = query["race"][0], query["income"][0]
    people = people_matching(input_frame, categories={"race": [race], "income": [income]})
    expect(page.locator(".chart-note").first).to_contain_text(f"{people:,} people match")
    expect(page.get_by_role("button", name=f"✕ Chart selection: Race: {race} · Income: {income}")).to_be_visible()


def test_cross_filter_click_on_grouped_bars(server: str, page, input_frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    """Grouped bars of race by income: a click on a bar picks its race and income
    (Bokeh reports nested factors as a number, mapped back to the bar)."""
    from playwright.sync_api import expect

    box = chart_box(page, f"{server}?tab=visualize&chart=grouped&x=race&group=income")
    page.mouse.click(box["x"] + box["width"] * 0.72, box["y"] + box["height"] * 0.6)
    expect(page).to_have_url(re.compile(r"race=[^&]+.*income=[^&]+"))
    query = parse_qs(urlparse(page.url).query)
    categories = {name: query[name] for name in ("race", "income")}
    people = people_matching(input_frame, categories=categories)
    expect(page.locator(".chart-note").first).to_contain_text(f"{people:,} people match")
