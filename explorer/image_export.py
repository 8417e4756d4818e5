"""PNG and JPG export of the chart on screen, through Bokeh and headless Chromium.

A small pool of selenium Chrome webdrivers (EXPLORER_IMAGE_BROWSERS, default 2)
serves every session of the server process: each is started on first need and
reused (starting Chromium costs about a second, an export on a warm one much
less). A webdriver runs one page at a time, so an export waits at most for one
render per browser ahead of it, never for a queue of them behind one lock. A
render that takes longer than EXPLORER_RENDER_TIMEOUT seconds is cut off: its
browser is killed (a fresh one replaces it on the next export) and the session
gets a message. Nothing here changes process-wide state such as HOME: Chromium
gets its own HOME through the driver's environment, and the page Bokeh renders
is written to this exporter's own temporary directory.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import panel as pn
from PIL import Image

from warehouse.config import get_settings

if TYPE_CHECKING:
    from explorer.visualize import VisualizeView

log = logging.getLogger(__name__)
# Bokeh logs every console line of the export page (WebGL fallbacks and the like) as a warning.
logging.getLogger("bokeh.io.export").setLevel(logging.ERROR)

# What any headless Chromium needs here: root needs --no-sandbox, and the closed
# network refuses Chromium's background connections. The browser tests and the
# explorer benchmark start their Chromium with these too.
HEADLESS_CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
CHROME_ARGS = (
    *HEADLESS_CHROMIUM_ARGS,
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--window-size=1400,1000",
)


class ImageExportError(RuntimeError):
    """The image could not be made; the message says why in words."""


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (read from /proc), deepest last."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_driver(driver: Any) -> None:
    """Kill a (possibly hung) chromedriver and the Chromium it started, without waiting on it."""
    process = getattr(getattr(driver, "service", None), "process", None)
    if process is None:
        return
    for pid in [*_descendants(process.pid), process.pid]:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        process.wait(timeout=5)


class ImageExporter:
    """A pool of webdrivers; `png(chart)` and `jpg(chart)` return file bytes."""

    def __init__(self, browsers: int | None = None, render_timeout_s: float | None = None) -> None:
        settings = get_settings()
        self.chromium = settings.explorer_chromium
        self.chromedriver = settings.explorer_chromedriver
        self.browsers = browsers or settings.explorer_image_browsers
        self.render_timeout_s = render_timeout_s or settings.explorer_render_timeout_s
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(self.browsers)  # one per browser, busy or not
        self._live: set[Any] = set()
        self._live_lock = threading.Lock()
        self._closed = False
        self._workdir = Path(tempfile.mkdtemp(prefix="explorer-image-"))
        atexit.register(self.close)

    # -- the browsers --

    def _start(self) -> Any:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        if not Path(self.chromedriver).exists():
            raise ImageExportError(
                f"image export needs chromedriver at {self.chromedriver} (Debian: apt-get install chromium-driver)"
            )
        profile = self._workdir / f"profile-{uuid.uuid4().hex[:8]}"
        home = profile / "home"
        home.mkdir(parents=True)
        options = webdriver.ChromeOptions()
        if Path(self.chromium).exists():
            options.binary_location = self.chromium
        for argument in CHROME_ARGS:
            options.add_argument(argument)
        options.add_argument(f"--user-data-dir={profile}")
        # Chromium writes caches under $HOME: give this browser its own, in its own
        # environment, rather than changing this process's HOME.
        service = Service(self.chromedriver, env={**os.environ, "HOME": str(home)})
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_page_load_timeout(self.render_timeout_s)
        driver.set_script_timeout(self.render_timeout_s)
        with self._live_lock:
            self._live.add(driver)
        return driver

    @contextlib.contextmanager
    def _browser(self) -> Iterator[Any]:
        """A browser of the pool for one render: an idle one, or a new one while the pool
        has room; otherwise wait (at most one render) for one to come back."""
        if not self._slots.acquire(timeout=self.render_timeout_s + 5):
            raise ImageExportError("every image browser is busy: try again in a moment")
        driver = None
        try:
            try:
                driver = self._idle.get_nowait()
            except queue.Empty:
                driver = self._start()
            yield driver
        except BaseException:
            if driver is not None:  # a failed or cut-off render: replace that browser next time
                self._discard(driver)
                driver = None
            raise
        finally:
            if driver is not None:
                if self._closed:
                    self._discard(driver)
                else:
                    self._idle.put(driver)
            self._slots.release()

    def _discard(self, driver: Any) -> None:
        with self._live_lock:
            self._live.discard(driver)
        _kill_driver(driver)

    def warm_up(self) -> None:
        """Start one browser now (in the background at server start) so the first export is fast."""
        try:
            with self._browser():
                pass
        except Exception as error:  # noqa: BLE001 - a warm-up failure is reported at export time
            log.warning("image export browser did not start: %s", error)

    def close(self) -> None:
        """Quit every browser (at exit too)."""
        self._closed = True
        with self._live_lock:
            drivers, self._live = list(self._live), set()
        for driver in drivers:
            with contextlib.suppress(Exception):
                driver.quit()
            _kill_driver(driver)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def close_driver(self) -> None:
        """Quit the idle browsers (busy ones finish their render first)."""
        while True:
            try:
                self._discard(self._idle.get_nowait())
            except queue.Empty:
                return

    # -- images --

    def render(self, chart: Any) -> Any:
        """A Bokeh model of the chart at export size, with no toolbar (Bokeh models pass through)."""
        import holoviews as hv
        from bokeh.model import Model

        from explorer.visualize import size_for_export

        model = chart if isinstance(chart, Model) else _render_alone(hv, size_for_export(chart))
        for plot in _plots(model):
            plot.toolbar_location = None
        return model

    def png_image(self, chart: Any, scale: int = 1) -> Image.Image:
        from bokeh.io.export import get_layout_html
        from bokeh.resources import INLINE

        page = self._workdir / f"chart-{uuid.uuid4().hex}.html"
        page.write_text(get_layout_html(self.render(chart), resources=INLINE), encoding="utf-8")
        try:
            with self._browser() as driver, device_scale(driver, scale):
                return self._screenshot_with_deadline(driver, page)
        except ImageExportError:
            raise
        except Exception as error:
            raise ImageExportError(f"the image could not be made: {error}") from error
        finally:
            page.unlink(missing_ok=True)

    def _screenshot_with_deadline(self, driver: Any, page: Path) -> Image.Image:
        """Render in a helper thread; past the deadline, kill the browser (which ends
        the helper's blocked call) and say so."""
        outcome: dict[str, Any] = {}
        finished = threading.Event()

        def work() -> None:
            try:
                outcome["image"] = _screenshot(driver, page, self.render_timeout_s)
            except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
                outcome["error"] = error
            finally:
                finished.set()

        threading.Thread(target=work, name="image-render", daemon=True).start()
        if not finished.wait(self.render_timeout_s):
            raise ImageExportError(
                f"the image took longer than {self.render_timeout_s:g} s to draw and was stopped: "
                "try again, or simplify the chart"
            )
        if "error" in outcome:
            raise outcome["error"]
        return outcome["image"]

    def png(self, chart: Any, scale: int = 1) -> bytes:
        buffer = io.BytesIO()
        self.png_image(chart, scale).save(buffer, format="PNG", optimize=False)
        return buffer.getvalue()

    def jpg(self, chart: Any, quality: int = 92, scale: int = 1) -> bytes:
        return png_to_jpg(self.png(chart, scale), quality)


def _render_alone(hv: Any, chart: Any) -> Any:
    """The chart's Bokeh model, in a Document of its own. `hv.render` puts the plot in
    Bokeh's `curdoc()`, which is process-wide, not per thread: from a worker thread it
    is whatever document the event loop is serving at that moment (another analyst's
    session, or one being destroyed: "'Document' object has no attribute '_theme'"),
    and the render would set that document's theme and hook into its end. So render
    as Panel's HoloViews pane does: server mode, with the document given."""
    from bokeh.document import Document

    renderer = hv.renderer("bokeh").instance(mode="server")
    return renderer.get_plot(chart, doc=Document()).state


@contextmanager
def device_scale(driver: Any, scale: int) -> Iterator[None]:
    """Render at `scale` device pixels per CSS pixel (a 2x image has twice the pixels
    of the same layout, not a stretched copy); back to 1 afterwards."""
    if scale == 1:
        yield
        return
    metrics = {"width": 0, "height": 0, "deviceScaleFactor": scale, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        yield
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _screenshot(driver: Any, page: Path, timeout: float) -> Image.Image:
    """What bokeh.io.export.get_screenshot_as_png does, on a page we wrote ourselves
    (Bokeh's own writes its page into the user's home directory)."""
    from bokeh.io.export import _maximize_viewport, wait_until_render_complete

    started = time.monotonic()
    driver.maximize_window()
    driver.get(page.as_uri())
    wait_until_render_complete(driver, max(1, int(timeout - (time.monotonic() - started))))
    width, height, dpr = _maximize_viewport(driver)
    png = driver.get_screenshot_as_png()
    return Image.open(io.BytesIO(png)).convert("RGBA").crop((0, 0, width * dpr, height * dpr))


def export_png(chart: Any) -> bytes:
    """PNG bytes of a HoloViews chart or a Bokeh model, through the shared browser."""
    return exporter().png(chart)


def export_jpg(chart: Any) -> bytes:
    return exporter().jpg(chart)


def png_to_jpg(png: bytes, quality: int = 92) -> bytes:
    """JPEG has no transparency: flatten the PNG onto white first."""
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    buffer = io.BytesIO()
    background.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _plots(model: Any) -> Iterator[Any]:
    from bokeh.models import Plot

    if isinstance(model, Plot):
        yield model
    for child in getattr(model, "children", []) or []:
        yield from _plots(child[0] if isinstance(child, tuple) else child)


_exporter: ImageExporter | None = None
_exporter_lock = threading.Lock()
_signals_installed = False


def close_on_terminate() -> None:
    """Quit the shared browser when the server is stopped with SIGTERM (docker stop,
    a test's terminate()): Python skips atexit handlers on an unhandled SIGTERM, which
    would leave chromedriver and Chromium running. Call from the main thread."""
    global _signals_installed
    if _signals_installed or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_terminate(signum: int, frame: Any) -> None:
        if _exporter is not None:
            _exporter.close()
        if callable(previous):
            previous(signum, frame)
        else:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_terminate)
    _signals_installed = True


def exporter() -> ImageExporter:
    """The process-wide exporter (one browser for every session)."""
    global _exporter
    with _exporter_lock:
        if _exporter is None:
            _exporter = ImageExporter()
        return _exporter


def download_buttons(view: VisualizeView) -> pn.Column:
    """'Download PNG' and 'Download JPG' for the chart on screen, plus where errors show."""
    status = pn.pane.Alert(
        "", alert_type="danger", visible=False, sizing_mode="stretch_width", css_classes=["image-export-error"]
    )

    def make(extension: str, button: pn.widgets.FileDownload) -> Any:
        def callback() -> io.BytesIO:
            result = view.result
            if result is None or result.chart is None:
                status.param.update(
                    object="There is no chart to export: change the filters or the chart.", visible=True
                )
                return io.BytesIO(b"")  # None makes Panel log a traceback
            from explorer.visualize import export_chart

            button.filename = result.spec.filename(extension)
            scale = int(getattr(view, "export_scale", 1) or 1)
            try:
                chart = export_chart(result)  # with the intervals, faded groups and the footnote
                data = exporter().png(chart, scale=scale) if extension == "png" else exporter().jpg(chart, scale=scale)
            except ImageExportError as error:
                status.param.update(object=str(error), visible=True)
                return io.BytesIO(b"")
            status.visible = False
            return io.BytesIO(data)

        return callback

    png = pn.widgets.FileDownload(
        label="Download PNG", filename="chart.png", color="primary", width=170, css_classes=["download-png"]
    )
    jpg = pn.widgets.FileDownload(
        label="Download JPG", filename="chart.jpg", color="primary", width=170, css_classes=["download-jpg"]
    )
    png.callback = make("png", png)
    jpg.callback = make("jpg", jpg)

    def refresh_names(*_: Any) -> None:
        result = view.result
        has_chart = result is not None and result.chart is not None
        # No chart, nothing to download: the buttons say so by being disabled.
        png.disabled = jpg.disabled = not has_chart
        if has_chart:
            png.filename = result.spec.filename("png")
            jpg.filename = result.spec.filename("jpg")

    view.param.watch(refresh_names, "result")
    refresh_names()
    return pn.Column(pn.Row(png, jpg), status, sizing_mode="stretch_width")
