"""Browser tests: the served explorer (a real `panel serve` subprocess on a free port,
pointed at the census SQLite file through DATABASE_URL) driven by Playwright in
Debian's headless Chromium. Screenshots of the three tabs go to artifacts/."""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest

from devtools.servers import ServerProcess, child_pids, free_port, server_tracebacks
from explorer.image_export import HEADLESS_CHROMIUM_ARGS
from explorer.serve import serve_command, serve_environment

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROME_ARGS = list(HEADLESS_CHROMIUM_ARGS)
COMMIT = "test-commit-4f2a"

if not Path(CHROMIUM).exists() or not Path("/usr/bin/chromedriver").exists():
    pytest.skip("needs Debian's chromium and chromium-driver", allow_module_level=True)


@pytest.fixture(scope="module")
def server(sqlite_census_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("explorer") / "serve.log"
    env = serve_environment(DATABASE_URL=sqlite_census_url, GIT_COMMIT=COMMIT, EXPLORER_WARM_DELAY="0")
    command = serve_command(port, address="127.0.0.1")
    server = ServerProcess(command, port, env=env, log=log, start_timeout_s=90, poll_s=0.3).start()
    try:
        yield f"{server.base_url}/app"
    finally:
        assert server.process is not None
        drivers = child_pids(server.process.pid)  # the export browser's chromedriver, started once by the server
        server.stop(timeout_s=30)
        time.sleep(1)
        assert not [pid for pid in drivers if Path(f"/proc/{pid}").exists()], "the export browser outlived the server"
        text = server.output
        assert not server_tracebacks(text), text[-4000:]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a 2-core machine running other suites too
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(45_000)
    yield page
    context.close()


def control(page, label: str, kind: str = "select"):  # type: ignore[no-untyped-def]
    """The input of the widget whose label is exactly `label`."""
    exact = page.locator("label", has_text=re.compile(f"^{re.escape(label)}$"))
    # The visible one: Browse's filter panel has the same labels in its (hidden) tab.
    return page.locator(".bk-input-group").filter(has=exact).locator(f"{kind}:visible").first


def choose(page, label: str, value: str) -> None:  # type: ignore[no-untyped-def]
    """Pick a value in a MultiChoice by typing it, as a person would."""
    box = control(page, label, "input[type=search]")
    box.click()
    box.fill(value)
    group = page.locator(".bk-input-group:visible").filter(
        has=page.locator("label", has_text=re.compile(f"^{re.escape(label)}$"))
    )
    # A category's option reads "Female (16,192)": the value and its facet count.
    option = re.compile(rf"^{re.escape(value)}( \([\d,]+\))?$")
    group.locator(".choices__item--choice", has_text=option).first.click()
    page.keyboard.press("Escape")


def url_has(page, **wanted: str | list[str]) -> None:  # type: ignore[no-untyped-def]
    """Wait until the page URL's query holds these parameters, in any order (the URL
    carries the tab, the filter, the chart, Browse's and Export's state together)."""

    def matches(url: str) -> bool:
        query = parse_qs(urlparse(url).query)
        return all(query.get(key) == (value if isinstance(value, list) else [value]) for key, value in wanted.items())

    page.wait_for_url(matches)


def headers(page) -> list[str]:  # type: ignore[no-untyped-def]
    titles = page.locator(".tabulator-col-title").all_inner_texts()
    return [t.strip() for t in titles if t.strip()]


def eventually(check, describe, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, describe()
        time.sleep(0.2)


def shown_number(text: str) -> int:
    return int(re.search(r"([\d,]+) (?:rows|people)", text).group(1).replace(",", ""))  # type: ignore[union-attr]


def screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(800)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_browse_table_columns_pages_and_sort(server: str, page, input_frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(server)
    page.get_by_text(f"People (readable view): {len(input_frame):,} rows").wait_for()
    expect(page.get_by_text(COMMIT)).to_be_visible()
    assert headers(page)[:4] == ["Person id", "Age", "Work class", "Census weight (fnlwgt)"]

    control(page, "Table").select_option(label="Uploads")
    page.get_by_text("Uploads: 1 row").wait_for()
    expect(page.locator(".tabulator-col-title", has_text="Source name")).to_be_visible()
    control(page, "Table").select_option(label="People (readable view)")
    page.get_by_text(f"People (readable view): {len(input_frame):,} rows").wait_for()
    expect(page.locator(".choices__item--selectable", has_text="Hours per week")).to_be_visible()  # picker reset

    # Keep only age and income: remove every other column from the picker.
    for title in [
        "Person id",
        "Work class",
        "Census weight (fnlwgt)",
        "Education",
        "Education years",
        "Marital status",
        "Occupation",
        "Relationship",
        "Race",
        "Gender",
        "Capital gain",
        "Capital loss",
        "Hours per week",
        "Native country",
    ]:
        page.get_by_role("button", name=f"Remove item: '{title}'", exact=True).click()
    expect(page.locator(".tabulator-col-title", has_text="Native country")).to_have_count(0)
    eventually(lambda: headers(page) == ["Age", "Income"], lambda: headers(page))

    page.locator("button.tabulator-page[data-page=next]").click()
    page.get_by_text("· page 2 of").wait_for()
    page.locator(".tabulator-col", has_text="Age").first.click()  # sort ascending, in SQL
    page.get_by_text("· page 1 of").wait_for()
    first_age = page.locator(".tabulator-row").first.locator(".tabulator-cell[tabulator-field=age]")
    expect(first_age).to_have_text(str(input_frame["age"].min()))
    url_has(page, tab="browse", table="people")
    screenshot(page, "explorer-browse.png")


def test_visualize_filters_chart_and_image_downloads(
    server: str,
    page,
    input_frame: pd.DataFrame,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    from PIL import Image
    from playwright.sync_api import expect

    page.goto(server)
    page.locator(".bk-tab", has_text="Visualize").click()
    page.get_by_text("people match").wait_for()
    choose(page, "Gender", "Female")
    url_has(page, gender="Female")
    # The facet counts follow the filter: Marital status now counts women only.
    women = input_frame[input_frame["gender"] == "Female"]
    divorced = int((women["marital_status"] == "Divorced").sum())
    expect(page.locator(".choices__item--choice", has_text=f"Divorced ({divorced:,})")).not_to_have_count(0)
    choose(page, "Marital status", "Divorced")
    url_has(page, gender="Female", marital_status="Divorced")
    control(page, "Chart type").select_option(label="Stacked bar")
    url_has(page, chart="stacked")
    control(page, "X axis").select_option(label="Age band")
    url_has(page, x="age_band")
    control(page, "Group / colour by").select_option(label="Race")
    url_has(page, tab="visualize", chart="stacked", x="age_band", measure="people", group="race")
    expected = int(((input_frame["gender"] == "Female") & (input_frame["marital_status"] == "Divorced")).sum())
    expect(page.get_by_text(f"{expected:,} people match")).to_be_visible()
    expect(page.locator(".bk-Canvas, canvas").first).to_be_visible()
    expect(page.locator(".pn-loading")).to_have_count(0)  # the loading indicator is cleared
    screenshot(page, "explorer-visualize.png")

    today = date.today().isoformat()
    for extension, image_format in (("png", "PNG"), ("jpg", "JPEG")):
        with page.expect_download(timeout=60_000) as download_info:
            page.get_by_role("button", name=f"Download {extension.upper()}").click()
        download = download_info.value
        name = download.suggested_filename
        assert name == f"census-stacked-bar-number-of-people-by-age-band-and-race-{today}.{extension}"
        target = tmp_path / name
        download.save_as(target)
        data = target.read_bytes()
        assert len(data) > 10_000, len(data)
        image = Image.open(io.BytesIO(data))
        assert image.format == image_format and image.size == (1000, 560)
        (ARTIFACTS / f"explorer-download.{extension}").write_bytes(data)


def test_link_restores_view_and_shows_no_match_message(server: str, page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(
        f"{server}?tab=visualize&chart=line&group=gender&measure=share_over_50k&education=Preschool&workclass=Without-pay"
    )
    page.get_by_text("No one matches these filters").wait_for()
    expect(control(page, "Chart type")).to_have_value("Line over age")
    expect(control(page, "Measure")).to_have_value("Share earning >50K")
    expect(page.locator(".choices__item--selectable:visible", has_text="Preschool")).to_be_visible()
    page.goto(f"{server}?tab=visualize&chart=line&group=gender&measure=share_over_50k&income=%3E50K")
    page.get_by_text("people match").wait_for()
    expect(control(page, "X axis")).to_have_value("Age")


def test_export_csv_matches_the_count_shown(server: str, page, input_frame: pd.DataFrame, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(f"{server}?tab=export&gender=Female&age_min=40&workclass=unknown&workclass=Private")
    count_text = page.get_by_text("will be exported").text_content() or ""
    shown = shown_number(count_text)
    subset = input_frame[
        (input_frame["gender"] == "Female")
        & (input_frame["age"] >= 40)
        & (input_frame["workclass"].isna() | (input_frame["workclass"] == "Private"))
    ]
    assert shown == len(subset)
    expect(page.locator(".export-preview .tabulator-row")).to_have_count(10)
    screenshot(page, "explorer-export.png")
    with page.expect_download(timeout=60_000) as download_info:
        page.get_by_role("button", name=re.compile("Download CSV")).click()
    download = download_info.value
    assert download.suggested_filename.startswith("census-people_gender-female-work-class-unknown-private-age-40")
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    exported = pd.read_csv(target)
    assert len(exported) == shown
    assert exported["age"].min() >= 40 and set(exported["gender"]) == {"Female"}


def test_image_export_works_without_a_writable_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from PIL import Image

    from explorer.image_export import ImageExporter, png_to_jpg

    monkeypatch.setenv("HOME", str(tmp_path / "missing" / "home"))  # does not exist: not writable
    from bokeh.plotting import figure

    plot = figure(width=400, height=300, title="home test")
    plot.line([1, 2, 3], [3, 1, 2])
    exporter = ImageExporter()
    try:
        png = exporter.png(plot)
    finally:
        exporter.close()
    assert os.environ["HOME"] == str(tmp_path / "missing" / "home")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (400, 300)
    jpg = Image.open(io.BytesIO(png_to_jpg(png)))
    assert jpg.format == "JPEG" and jpg.mode == "RGB"
