"""What every explorer page gets besides its tabs: the page script (explorer/page.js:
ARIA roles and labels, a visible focus ring, Back/Forward, Choices.js quiet) and the
light/dark theme switch in the header.

The script is part of the page itself (a data: URL in <head>, after Bokeh's own
scripts), so nothing is fetched from elsewhere at run time.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import quote

import panel as pn

PAGE_SCRIPT = Path(__file__).with_name("page.js")
THEME_PARAM = "theme"  # Panel reads ?theme=dark when it builds the page


@cache
def page_script_url() -> str:
    """page.js as a data: URL. Panel prefixes a script path without '//' with the
    page's relative path; the script's first line is a '//' comment, kept verbatim."""
    return "data:text/javascript;charset=utf-8," + quote(PAGE_SCRIPT.read_text(encoding="utf-8"), safe="/ ")


def is_dark() -> bool:
    return pn.config.theme == "dark"


def theme_toggle() -> pn.widgets.Button:
    """Switches between the light and the dark theme: Panel's design system builds the
    page (widgets, tables and charts) for ?theme=dark, so the switch reloads the page's
    own URL with that parameter set or removed."""
    dark = is_dark()
    button = pn.widgets.Button(
        label="Light theme" if dark else "Dark theme",
        color="light",
        width=130,
        css_classes=["theme-toggle"],
        description="Switch between the light and the dark theme",
    )
    button.js_on_click(
        code=f"""
        const url = new URL(window.location.href);
        if (url.searchParams.get("{THEME_PARAM}") === "dark") url.searchParams.delete("{THEME_PARAM}");
        else url.searchParams.set("{THEME_PARAM}", "dark");
        window.location.href = url.toString();
        """
    )
    return button


def install(template: pn.template.BaseTemplate) -> None:
    """Add the page script and the theme switch to a template."""
    # Page-wide resources go in <head> after Bokeh's scripts (the Bootstrap template
    # does not render template.config.js_files).
    if "census_page" not in pn.config.js_files:
        pn.config.js_files = {**pn.config.js_files, "census_page": page_script_url()}
    template.header.append(theme_toggle())
