"""Headless Chromium through the proxy: the explorer's Browse tab renders (so
its websocket connected through the proxy) and a PNG downloads from Visualize.

Run by .ci/docker.sh inside the app image (it has chromium, chromedriver and
selenium) on the host network, against the proxy's published port:
    python /ci/browse_check.py http://127.0.0.1:PORT/app COMMIT
Prints what it saw; exits 0 when both work, 1 otherwise.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def driver_for(download_dir: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1500,1100",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": download_dir, "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    # Headless Chromium saves downloads only when told where, through DevTools.
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": download_dir})
    return driver


# Bokeh renders its widgets in shadow roots, which XPath and CSS selectors do
# not enter: these scripts walk every shadow root.
DEEP_TEXT = """
const texts = [];
const visit = (root) => {
    texts.push(root.textContent || "");
    root.querySelectorAll("*").forEach((el) => { if (el.shadowRoot) visit(el.shadowRoot); });
};
visit(document.body);
return texts.join("\\n");
"""
DEEP_BUTTON = """
const find = (root) => {
    // Panel's FileDownload listens on an <a> inside its <button>.
    for (const el of root.querySelectorAll("a")) if (el.textContent.includes(arguments[0])) return el;
    for (const el of root.querySelectorAll("*")) {
        if (el.shadowRoot) { const found = find(el.shadowRoot); if (found) return found; }
    }
    return null;
};
return find(document.body);
"""


def text_appears(driver: webdriver.Chrome, text: str, seconds: float = 90) -> None:
    WebDriverWait(driver, seconds).until(lambda d: text in d.execute_script(DEEP_TEXT))


def deep_button(driver: webdriver.Chrome, label: str, seconds: float = 60) -> WebElement:
    return WebDriverWait(driver, seconds).until(lambda d: d.execute_script(DEEP_BUTTON, label))


def main() -> int:
    url, commit = sys.argv[1], sys.argv[2]
    downloads = tempfile.mkdtemp()
    driver = driver_for(downloads)
    try:
        driver.get(url)
        # The table is sent over the websocket: seeing it proves the upgrade went through.
        text_appears(driver, "People (readable view):")
        text_appears(driver, commit)
        print(f"browse: the Browse tab rendered through the proxy (footer shows {commit[:12]})")
        driver.get(url + "?tab=visualize")
        text_appears(driver, "people match")
        time.sleep(2)  # the chart follows the count
        driver.execute_script("arguments[0].click();", deep_button(driver, "Download PNG"))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            done = [p for p in Path(downloads).glob("*.png") if p.stat().st_size > 0]
            if done:
                data = done[0].read_bytes()
                ok = data.startswith(PNG_MAGIC)
                print(f"png: {done[0].name}, {len(data)} bytes, PNG signature {'ok' if ok else 'MISSING'}")
                return 0 if ok else 1
            time.sleep(0.5)
        page = " ".join(driver.execute_script(DEEP_TEXT).split())
        hint = page[page.find("Download PNG") - 300 : page.find("Download PNG") + 300]
        print(f"png: no PNG downloaded within 90 s ({[p.name for p in Path(downloads).iterdir()]}); page: {hint!r}")
        return 1
    except Exception as error:  # noqa: BLE001 - report any browser failure as one line
        print(f"browse check failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        return 1
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
