"""PNG and JPG export of the chart on screen, through Bokeh and one headless Chromium.

One selenium Chrome webdriver is started on first use and reused by every export
(starting Chromium costs about a second; an export on a warm driver much less).
Exports are serialized by a lock: a webdriver runs one page at a time.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import panel as pn
from PIL import Image

if TYPE_CHECKING:
    from explorer.visualize import VisualizeView

log = logging.getLogger(__name__)
# Bokeh logs every console line of the export page (WebGL fallbacks and the like) as a warning.
logging.getLogger("bokeh.io.export").setLevel(logging.ERROR)

CHROMIUM = os.environ.get("EXPLORER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("EXPLORER_CHROMEDRIVER", "/usr/bin/chromedriver")
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


def _writable(path: Path) -> bool:
    try:
        return path.is_dir() and os.access(path, os.W_OK | os.X_OK)
    except (OSError, RuntimeError):
        return False


class ImageExporter:
    """Owns the one webdriver; `png(chart)` and `jpg(chart)` return file bytes."""

    def __init__(self) -> None:
        self._driver: Any = None
        self._lock = threading.Lock()
        self._workdir = Path(tempfile.mkdtemp(prefix="explorer-export-"))
        atexit.register(self.close)

    # -- the browser --

    def _start(self) -> Any:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        if not Path(CHROMEDRIVER).exists():
            raise ImageExportError(
                f"image export needs chromedriver at {CHROMEDRIVER} (Debian: apt-get install chromium-driver)"
            )
        options = webdriver.ChromeOptions()
        if Path(CHROMIUM).exists():
            options.binary_location = CHROMIUM
        for argument in CHROME_ARGS:
            options.add_argument(argument)
        options.add_argument(f"--user-data-dir={self._workdir / 'profile'}")
        service = Service(CHROMEDRIVER)
        # Chromium writes its caches under $HOME; give it a writable one when $HOME is not.
        with self._writable_home():
            driver = webdriver.Chrome(service=service, options=options)
        return driver

    def driver(self) -> Any:
        if self._driver is None:
            self._driver = self._start()
        return self._driver

    def warm_up(self) -> None:
        """Start the browser now (in the background at server start) so the first export is fast."""
        with self._lock:
            try:
                self.driver()
            except Exception as error:  # noqa: BLE001 - a warm-up failure is reported at export time
                log.warning("image export browser did not start: %s", error)

    def close(self) -> None:
        """Quit the browser (at exit too). Waits for a start in progress, so a browser
        that was starting when the server stopped is not left behind."""
        locked = self._lock.acquire(timeout=20)
        try:
            self.close_driver()
        finally:
            if locked:
                self._lock.release()
        shutil.rmtree(self._workdir, ignore_errors=True)

    @contextmanager
    def _writable_home(self) -> Iterator[None]:
        """Bokeh writes its temporary HTML page to Path.home(): point HOME at a writable
        directory for the duration when HOME is unset or not writable."""
        original = os.environ.get("HOME")
        if original and _writable(Path(original)):
            yield
            return
        home = self._workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        os.environ["HOME"] = str(home)
        try:
            yield
        finally:
            if original is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = original

    # -- images --

    def render(self, chart: Any) -> Any:
        """A Bokeh model of the chart at export size, with no toolbar (Bokeh models pass through)."""
        import holoviews as hv
        from bokeh.model import Model

        from explorer.visualize import size_for_export

        model = chart if isinstance(chart, Model) else hv.render(size_for_export(chart), backend="bokeh")
        for plot in _plots(model):
            plot.toolbar_location = None
        return model

    def png_image(self, chart: Any, scale: int = 1) -> Image.Image:
        from bokeh.io.export import get_screenshot_as_png

        model = self.render(chart)
        with self._lock:
            try:
                driver = self.driver()
                with self._writable_home(), device_scale(driver, scale):
                    return get_screenshot_as_png(model, driver=driver, timeout=15, scale_factor=scale)
            except ImageExportError:
                raise
            except Exception as error:
                # A crashed browser is replaced on the next export.
                self.close_driver()
                raise ImageExportError(f"the image could not be made: {error}") from error

    def close_driver(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            with contextlib.suppress(Exception):
                driver.quit()

    def png(self, chart: Any, scale: int = 1) -> bytes:
        buffer = io.BytesIO()
        self.png_image(chart, scale).save(buffer, format="PNG", optimize=False)
        return buffer.getvalue()

    def jpg(self, chart: Any, quality: int = 92, scale: int = 1) -> bytes:
        return png_to_jpg(self.png(chart, scale), quality)


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
            button.filename = result.spec.filename(extension)
            scale = int(getattr(view, "export_scale", 1) or 1)
            try:
                data = (
                    exporter().png(result.chart, scale=scale)
                    if extension == "png"
                    else exporter().jpg(result.chart, scale=scale)
                )
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
