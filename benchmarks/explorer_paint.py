"""Explorer speed as the analyst sees it, measured in Chromium (issue 15's targets).

    python -m benchmarks.explorer_paint                        # census DB (DATABASE_URL or data/census.db)
    python -m benchmarks.explorer_paint --url sqlite:///data/explorer_1m.db --changes 20

Figures (median and max):
- filter change -> new chart painted: the page's own clock, from the key press that
  moves the age slider to the first animation frame after the chart's heading (drawn
  in the same server update as the chart) shows the new count. Targets: median
  <= 300 ms on the census file, <= 1 s on 1,000,000 people;
- page usable: from the server answering HTTP to the Visualize chart shown, <= 3 s;
- tab switch: from the click on a tab to its content shown, <= 500 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from devtools.servers import ServerProcess, free_port
from explorer.image_export import HEADLESS_CHROMIUM_ARGS
from explorer.serve import serve_command, serve_environment
from warehouse.config import get_settings

ROOT = Path(__file__).resolve().parent.parent

# In the page: press a key on a slider handle and resolve with the milliseconds until
# the frame after the chart subtitle's text changed (heading and chart arrive together).
MEASURE_CHANGE = """
async ([key]) => {
  const find = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.classList && el.classList.contains('chart-subtitle')) return el;
      if (el.shadowRoot) { const hit = find(el.shadowRoot); if (hit) return hit; }
    }
    return null;
  };
  let current = find(document);
  const before = (current || {}).textContent;
  const handle = (function search(root) {
    for (const el of root.querySelectorAll('*')) {
      if (el.classList && el.classList.contains('noUi-handle-upper')) return el;
      if (el.shadowRoot) { const hit = search(el.shadowRoot); if (hit) return hit; }
    }
    return null;
  })(document);
  const started = performance.now();
  handle.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true}));
  return await new Promise((resolve, reject) => {
    const deadline = started + 30000;
    const tick = () => {
      // Rescan the shadow roots only when the heading was replaced (a full scan costs ms).
      if (!current || !current.isConnected) current = find(document);
      const now = current;
      if (now && now.textContent !== before) {
        requestAnimationFrame(() => resolve(performance.now() - started));
      } else if (performance.now() > deadline) {
        reject(new Error('the chart did not change'));
      } else {
        requestAnimationFrame(tick);
      }
    };
    requestAnimationFrame(tick);
  });
}
"""


def summary(name: str, values_ms: list[float], target_ms: float) -> str:
    median, worst = statistics.median(values_ms), max(values_ms)
    verdict = "OK  " if median <= target_ms else "SLOW"
    return (
        f"{verdict} {name}: median {median:,.0f} ms, max {worst:,.0f} ms over {len(values_ms)}"
        f" (target median <= {target_ms:,.0f} ms)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="database URL (default: DATABASE_URL or data/census.db)")
    parser.add_argument("--changes", type=int, default=20, help="filter changes to time (default 20)")
    parser.add_argument("--target-ms", type=float, default=300.0, help="median target for a change (1000 on 1M rows)")
    args = parser.parse_args(argv)
    url = args.url or get_settings().database_url

    from playwright.sync_api import sync_playwright

    port = free_port()
    env = serve_environment(DATABASE_URL=url, EXPLORER_WARM_BROWSER="0")
    page_url = f"http://127.0.0.1:{port}/app"
    server = ServerProcess(serve_command(port, address="127.0.0.1"), port, env=env, start_timeout_s=120)
    with server, sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=list(HEADLESS_CHROMIUM_ARGS))
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(page_url)  # first visit: imports, snapshot warm-up
        page.locator(".row-count").wait_for()
        time.sleep(3)

        usable: list[float] = []
        for _ in range(3):
            started = time.perf_counter()
            page.goto(f"{page_url}?tab=visualize")
            page.locator(".chart-subtitle").first.wait_for()
            usable.append((time.perf_counter() - started) * 1000)

        changes = [
            float(page.evaluate(MEASURE_CHANGE, ["ArrowLeft" if i % 2 == 0 else "ArrowRight"]))
            for i in range(args.changes)
        ]

        switches: list[float] = []
        for name, shown in [
            ("Browse", ".row-count"),
            ("Export", ".export-count"),
            ("Visualize", ".chart-subtitle"),
        ] * 3:
            started = time.perf_counter()
            page.get_by_role("tab", name=name).click()
            page.locator(shown).first.wait_for(state="visible")
            switches.append((time.perf_counter() - started) * 1000)
        chromium.close()

    load = os.getloadavg()
    print(f"database: {url}")
    print(summary("filter change -> chart painted", changes, args.target_ms))
    print(summary("page usable (Visualize chart shown)", usable, 3000))
    print(summary("tab switch", switches, 500))
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (figures are noisy when others run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
