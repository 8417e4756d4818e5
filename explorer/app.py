"""The census explorer: Browse, Visualize and Export tabs in one page.

    panel serve explorer/app.py          (or: python -m explorer)

The tab, the filters and the chart live in the page URL (query string using the
same names as the API: age_min, gender=Female, workclass=unknown, chart=bar, ...),
so a view can be bookmarked or shared. When the database is unreachable or empty
the page shows a banner saying what to do, never a traceback.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

if __package__ in (None, ""):  # `panel serve explorer/app.py` runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import panel as pn

from explorer.store import UPLOAD_HINT, DataStore
from warehouse.config import get_settings
from warehouse.db import describe
from warehouse.query import MEASURES, PeopleFilter, QueryError

log = logging.getLogger("explorer")

TABS = ("browse", "visualize", "export")
TITLE = "Census explorer"
CSS = """
.footer { font-size: 12px; border-top: 1px solid #ddd; padding-top: 4px; }
"""

pn.extension("tabulator", notifications=True, loading_indicator=True, raw_css=[CSS], sizing_mode="stretch_width")

_warm_started = False
_warm_lock = threading.Lock()


def warm_image_export() -> None:
    """Start the export browser once per server process, in the background."""
    global _warm_started
    from explorer.image_export import close_on_terminate, exporter

    close_on_terminate()  # the export browser must not outlive the server
    with _warm_lock:
        if _warm_started:
            return
        _warm_started = True

    settings = get_settings()

    def warm() -> None:
        time.sleep(settings.explorer_warm_delay_s)  # let the first page load first
        if settings.explorer_warm_browser:
            exporter().warm_up()

    threading.Thread(target=warm, name="warm-image-export", daemon=True).start()


def session_query() -> dict[str, list[str]]:
    """The page's query string at session start, as text lists."""
    args: dict[str, Any] = dict(getattr(pn.state, "session_args", None) or {})
    parsed: dict[str, list[str]] = {}
    for key, values in args.items():
        parsed[key] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]
    return parsed


def footer(store: DataStore) -> pn.pane.Markdown:
    settings = get_settings()
    return pn.pane.Markdown(
        f"{TITLE} · version `{settings.git_commit}` · data: {describe(store.url)}",
        css_classes=["footer"],
        sizing_mode="stretch_width",
    )


def banner(store: DataStore) -> pn.Column:
    hint = "" if UPLOAD_HINT in store.message else f"\n\nIf the database is new, {UPLOAD_HINT}"
    return pn.Column(
        pn.pane.Alert(
            f"### The explorer cannot show data\n\n{store.message}{hint}",
            alert_type="danger",
            css_classes=["db-banner"],
            sizing_mode="stretch_width",
        ),
        pn.pane.Markdown("Reload this page once the database is reachable and loaded."),
    )


class ExplorerApp:
    """Builds the page for one browser session and keeps its URL in step.

    The Browse tab is built at once; Visualize and Export are built the first time
    they are shown (or at once when the link opens them), so the page is usable
    before the charting libraries have loaded.
    """

    def __init__(self, store: DataStore, query: dict[str, list[str]] | None = None) -> None:
        from explorer.browse import BrowseView
        from explorer.filters import FilterPanel

        self.store = store
        query = query or {}
        self.query = query  # what the link said, for the tabs not built yet
        self.notice: str | None = None
        try:
            self.initial_filter = PeopleFilter.from_params(query)
        except QueryError as error:
            self.initial_filter, self.notice = PeopleFilter(), f"The link's filter was ignored: {error}"
        # The session's one filter: each tab shows it in its own widgets, and takes
        # it over when the analyst opens the tab (only the tab in view recomputes).
        self.people_filter = self.initial_filter
        self.initial_query = query  # the chart and its options are read once Visualize is built
        self.browse = BrowseView(store, self._filters(FilterPanel))
        self.browse.set_params(query)  # table, columns, sort and page
        self.browse.param.watch(self._write_url, ["url_state"])
        self.visualize: Any = None
        self.export: Any = None
        self._holders = {
            "browse": pn.Column(self.browse, sizing_mode="stretch_width"),
            "visualize": pn.Column(sizing_mode="stretch_width", min_height=400),
            "export": pn.Column(sizing_mode="stretch_width", min_height=400),
        }
        tab = (query.get("tab") or ["browse"])[-1]
        active = TABS.index(tab) if tab in TABS else 0
        self.ensure(TABS[active])
        self.tabs = pn.Tabs(
            *((name.capitalize(), self._holders[name]) for name in TABS),
            active=active,
            sizing_mode="stretch_width",
        )
        self.tabs.param.watch(self._tab_changed, ["active"])

    def _filters(self, panel_class: Any, **extra: Any) -> Any:
        """A tab's filter widgets, showing the session's filter and feeding it."""
        panel = panel_class(store=self.store, people_filter=self.people_filter, **extra)
        panel.param.watch(self._filter_changed, ["people_filter"])
        return panel

    def _filter_changed(self, event: Any) -> None:
        self.people_filter = event.new
        self._write_url()

    def filter_panels(self) -> dict[str, Any]:
        views = {"browse": self.browse, "visualize": self.visualize, "export": self.export}
        return {tab: view.filters for tab, view in views.items() if view is not None}

    def ensure(self, tab: str) -> None:
        """Build a tab's view if it is not built yet."""
        from explorer.filters import FilterPanel

        if tab == "visualize" and self.visualize is None:
            from explorer.crossfilter import CrossFilter
            from explorer.visualize import CHART_OPTIONS, ChartSpec, VisualizeView

            export_subset = pn.widgets.Button(
                label="Export this subset",
                color="primary",
                sizing_mode="stretch_width",
                css_classes=["export-subset"],
                description="Open the Export tab with these filters",
            )
            export_subset.on_click(lambda _event: setattr(self.tabs, "active", TABS.index("export")))
            view = VisualizeView(self.store, self._filters(FilterPanel, actions=[export_subset]))
            spec = ChartSpec.from_params(self.initial_query)
            if spec.kind in view.param.chart_type.objects.values() and spec.measure in MEASURES:
                view.set_spec(spec)
            view.param.watch(self._write_url, ["chart_type", "x", "group", "measure", *CHART_OPTIONS])
            CrossFilter(view)  # clicks and box selections on the chart add to the filters
            self.visualize = view
            self._holders["visualize"][:] = [view]
        elif tab == "export" and self.export is None:
            from explorer.export_tab import ExportView

            view = ExportView(self.store, self._filters(FilterPanel))
            view.set_params(self.query)
            view.param.watch(self._write_url, ["fmt"])
            view.column_picker.param.watch(self._write_url, ["value"])
            self.export = view
            self._holders["export"][:] = [view]

    def _tab_changed(self, _event: Any) -> None:
        holder = self._holders[self.tab]
        if not holder.objects:
            with holder.param.update(loading=True):
                self.ensure(self.tab)
        panel = self.filter_panels().get(self.tab)
        if panel is not None and panel.people_filter != self.people_filter:
            panel.set_filter(self.people_filter)  # the filter chosen in another tab
        self._write_url()

    @property
    def tab(self) -> str:
        return TABS[self.tabs.active]

    def url_params(self) -> dict[str, list[str]]:
        """What the page URL says: the tab, the session's filter, the chart, Browse's
        table, columns, sort and page, and Export's format and columns (a tab not
        built yet keeps what the link said)."""
        params: dict[str, list[str]] = {"tab": [self.tab]}
        if pn.config.theme == "dark":  # the theme switch's choice survives URL updates
            params["theme"] = ["dark"]
        params.update(self.people_filter.to_params())
        if self.visualize is not None:
            params.update(self.visualize.spec.to_params())
        else:
            chart_keys = ("chart", "x", "group", "measure", "weighted", "order", "small", "confidence")
            params.update({k: v for k, v in self.query.items() if k in chart_keys and v})
        params.update(self.browse.to_params())
        if self.export is not None:
            params.update(self.export.to_params())
        else:
            params.update({k: v for k, v in self.query.items() if k in ("format", "export_columns") and v})
        return params

    def _write_url(self, *_events: Any) -> None:
        location = pn.state.location
        if location is not None:
            search = "?" + urlencode(self.url_params(), doseq=True)
            if location.search != search:
                location.search = search

    def page(self) -> list[Any]:
        items: list[Any] = []
        if self.notice:
            items.append(pn.pane.Alert(self.notice, alert_type="warning"))
        items.append(self.tabs)
        return items


def build(store: DataStore | None = None, query: dict[str, list[str]] | None = None) -> pn.template.BootstrapTemplate:
    from explorer.page import install
    from explorer.readonly import missing_file_message

    url = store.url if store is not None else get_settings().database_url
    missing = missing_file_message(url, UPLOAD_HINT)
    store = store or DataStore(url=url)  # its engine only reads (warehouse.db.make_read_engine)
    # No header busy spinner: Panel's busy flag is one for the whole process, so every
    # session's spinner turned on whenever any analyst's callback ran (a wrong signal),
    # and each callback updated every open session's spinner (8 analysts: 16 updates
    # sent per filter change). Each view shows its own loading state instead.
    template = pn.template.BootstrapTemplate(
        title=TITLE, header_background="#2f4f6f", main_max_width="1600px", busy_indicator=None
    )
    install(template)  # page script (ARIA, focus, Back/Forward) and the theme switch
    try:
        if missing:  # say so; opening it would create an empty file
            store.param.update(status="unreachable", message=missing)
        ok = not missing and store.check()
        if ok:
            app = ExplorerApp(store, query if query is not None else session_query())
            template.main.extend(app.page())
            template.explorer = app  # type: ignore[attr-defined]  # for tests and debugging
        else:
            template.main.append(banner(store))
    except Exception as error:  # noqa: BLE001 - a banner, never a traceback in the page
        log.exception("explorer failed to start")
        store.param.update(status="unreachable", message=f"The explorer could not load the data: {error}")
        template.main[:] = [banner(store)]
    template.main.append(footer(store))
    return template


if pn.state.served or __name__.startswith("bokeh_app"):
    from explorer.serve import ensure_worker_threads

    ensure_worker_threads()  # every session's callbacks run in worker threads
    warm_image_export()
    build().servable(title=TITLE)
