"""Prove PNG export works inside the image (run by .ci/docker.sh in the explorer container).

Usage: python docker/png_smoke.py [--require-project]
Uses the project's explorer.export.export_png when it is importable, else
bokeh.io.export_png with a Selenium Chromium driver built the way the project
builds it. Prints which path it took, and the PNG's size; exits non-zero on failure.
"""

import sys

from bokeh.plotting import figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def via_project(fig: object) -> bytes:
    from explorer.export import export_png  # noqa: PLC0415

    return export_png(fig)


def via_bokeh(fig: object) -> bytes:
    import io  # noqa: PLC0415

    from bokeh.io.export import get_screenshot_as_png  # noqa: PLC0415
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        image = get_screenshot_as_png(fig, driver=driver)
    finally:
        driver.quit()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> int:
    fig = figure(width=300, height=200, title="png smoke")
    fig.line([1, 2, 3], [1, 4, 9])
    try:
        import explorer.export  # noqa: F401, PLC0415
    except ImportError as error:
        if "--require-project" in sys.argv:
            print(f"png export: explorer.export is not importable: {error}")
            return 1
        how, png = "fallback bokeh.io.export with selenium", via_bokeh(fig)
    else:
        how, png = "project explorer.export.export_png", via_project(fig)
    if not png.startswith(PNG_MAGIC):
        print(f"png export via {how}: not a PNG ({len(png)} bytes)")
        return 1
    print(f"png export via {how}: {len(png)} bytes OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
