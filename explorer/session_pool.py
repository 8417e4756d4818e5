"""The worker threads every session's callbacks run in, one session at a time each.

Panel's `--num-threads` pool runs every callback it is given at once, even two of
the same session: two quick changes of one widget could then be applied in the
wrong order (the older value last). This pool keeps each session's callbacks in
the order they came, one after another, as the single event loop did, while the
callbacks of different sessions run in parallel: one analyst's slow work never
waits for another's, and never overtakes itself.

It also takes a widget's pending browser changes on the event loop, not in the
worker. Panel collects a widget's changes in `widget._events` on the event loop
(`Syncable._server_change`: "already collecting? then add to the batch, else
schedule the batch") and its worker task `Syncable._change_event` swaps that dict
for an empty one. Done in a worker, the swap races the event loop: a change added
between the loop's "already collecting?" test and the worker's swap lands in the
new dict with no batch scheduled for it, and is lost until the widget next changes
(a quick slider press or a column removed from the picker, dropped). Here the swap
happens in `submit`, which Panel calls on the event loop, so both sides of it run
on one thread; the worker gets the batch as a value. A batch still waiting behind
the same widget's previous batch is merged into it (newest value wins), so a burst
of changes to one widget costs one callback, not one per key press.

And a stale answer never overwrites a newer browser change. A worker cannot touch
the session's Bokeh models (no document lock), so Panel queues each model update
it makes for the event loop (`Syncable._apply_update`), where it lands later: by
then the analyst may have moved the widget again (a slider pressed again, a second
column removed). Panel would then send the older value back, moving the slider
handle back or putting the column back, and drop the newer change still waiting.
`install` wraps those two Panel steps: the event loop counts each widget property's
browser changes as they arrive, a batch notes the count it was taken at, and the
widget's update of a property made while its batch is being applied carries that
count; on the loop, if the browser has changed that property since, it is left out
of the update: the newer change is on its way through the pool, its answer follows.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from bokeh.document import Document

Task = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def _session_of(fn: Callable[..., Any], args: tuple[Any, ...]) -> int | None:
    """The Bokeh document a Panel task belongs to (Panel passes it as the first
    argument, or as the first argument of a partial), as a key."""
    for candidate in (*args[:1], *getattr(fn, "args", ())[:1]):
        if isinstance(candidate, Document):
            return id(candidate)
    return None


def _widget_of_change_task(fn: Callable[..., Any]) -> Any | None:
    """The widget when `fn` is Panel's "apply this widget's browser changes" task
    (`Syncable._change_event`, bound to the widget), else None."""
    from panel.reactive import Syncable

    owner = getattr(fn, "__self__", None)
    if isinstance(owner, Syncable) and getattr(fn, "__name__", "") == "_change_event":
        return owner
    return None


def apply_changes(doc: Document, widget: Any, events: dict[str, Any], taken: dict[str, int]) -> None:
    """What `Syncable._change_event` does, on a batch already taken from the widget;
    first note which browser changes the widget's Python state now includes."""
    from panel.io.state import set_curdoc

    if _read_only_table(widget):
        # Its browser cannot edit it: a `data` event is the table echoing a page the
        # server sent, and applied after the analyst's later changes (a column removed
        # meanwhile) it would write old rows into the newer page.
        events.pop("data", None)
    _batch.current = (widget, taken)
    try:
        with set_curdoc(doc):
            widget._process_events(events)
    finally:
        _batch.current = None


def _received(widget: Any) -> dict[str, int]:
    """Browser changes received per property of `widget` (written on the event loop)."""
    counts = widget.__dict__.get("_browser_changes")
    if counts is None:
        counts = widget.__dict__["_browser_changes"] = {}
    return counts


def _read_only_table(widget: Any) -> bool:
    from panel.widgets import Tabulator

    return isinstance(widget, Tabulator) and widget.disabled


class _Batch(threading.local):
    """The widget whose browser changes this worker thread is applying, with their counts."""

    current: tuple[Any, dict[str, int]] | None = None


_batch = _Batch()


class SessionOrderedPool(ThreadPoolExecutor):
    """A thread pool that runs the tasks of one session in order, one at a time."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="session")
        self._waiting: dict[int, deque[Task]] = {}
        self._waiting_lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        key = _session_of(fn, args)
        if key is None:  # not a session's task (a periodic callback): any thread
            return super().submit(fn, *args, **kwargs)
        widget = _widget_of_change_task(fn)
        if widget is not None:  # on the event loop: take the widget's batch now (module docstring)
            events, widget._events = widget._events, {}
            if not events:  # an earlier task already took them
                done: Future[Any] = Future()
                done.set_result(None)
                return done
            received = _received(widget)
            taken = {attr: received.get(attr, 0) for attr in events}
            fn, args, kwargs = apply_changes, (args[0], widget, events, taken), {}
        future: Future[Any] = Future()
        with self._waiting_lock:
            queue = self._waiting.get(key)
            if queue is not None:  # this session is busy: after its earlier tasks
                if widget is not None and queue and _same_widget_batch(queue[-1], widget):
                    queue[-1][2][2].update(args[2])  # not started yet: one batch, newest values
                    queue[-1][2][3].update(args[3])
                    return queue[-1][0]
                queue.append((future, fn, args, kwargs))
                return future
            self._waiting[key] = deque()
        self._start(key, future, fn, args, kwargs)
        return future

    def _start(
        self, key: int, future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        try:
            running = super().submit(fn, *args, **kwargs)
        except RuntimeError as error:  # the pool is shutting down
            future.set_exception(error)
            self._next(key)
            return
        running.add_done_callback(functools.partial(self._finished, key, future))

    def _finished(self, key: int, future: Future[Any], running: Future[Any]) -> None:
        if running.cancelled():
            future.cancel()
        elif running.exception() is not None:
            future.set_exception(running.exception())
        else:
            future.set_result(running.result())
        self._next(key)

    def _next(self, key: int) -> None:
        with self._waiting_lock:
            queue = self._waiting.get(key)
            if not queue:
                self._waiting.pop(key, None)
                return
            task = queue.popleft()
        self._start(key, *task)


def _same_widget_batch(task: Task, widget: Any) -> bool:
    """Whether a waiting task is a batch of `widget`'s changes (so the next may join it)."""
    _, fn, args, _ = task
    return fn is apply_changes and args[1] is widget


def _count_browser_change(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap `Syncable._server_change` (event loop: a model property changed) to count
    the changes that came from the browser (Panel marks its own in `_changing`)."""

    @functools.wraps(original)
    def _server_change(self: Any, doc: Document, ref: str, subpath: str | None, attr: str, old: Any, new: Any) -> None:
        name = f"{subpath}.{attr}" if subpath else attr
        if name not in self._changing.get(ref, []):
            received = _received(self)
            received[name] = received.get(name, 0) + 1
        original(self, doc, ref, subpath, attr, old, new)

    return _server_change


def _skip_stale_updates(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap `Syncable._apply_update` (Python changed a widget): when the update must wait
    for the event loop, send it there with the browser-change counts it was made at."""

    @functools.wraps(original)
    def _apply_update(self: Any, events: dict[str, Any], msg: dict[str, Any], model: Any, ref: str) -> bool:
        from panel.io.state import set_curdoc, state

        if ref not in state._views or ref in state._fake_roots:
            return True
        _, root, doc, comm = state._views[ref]
        if comm or not doc.session_context or state._unblocked(doc):
            return original(self, events, msg, model, ref)  # applied now, nothing can be newer
        # Only the widget's answer to its own browser change can be stale: the echo (or
        # correction) of the values this thread is applying. Panel's other updates
        # (another widget, the URL, a table's data for a page turn) always go out.
        # Only the widget's own model: a table's data source answers edits with data
        # computed from them, and must stay in step with the table's Python value.
        current = _batch.current
        own = current is not None and current[0] is self and self._models.get(ref, (None,))[0] is model
        basis = {attr: current[1][attr] for attr in msg if attr in current[1]} if own and current else {}
        curdoc_events = self._in_process__events.pop(doc, {})
        update = functools.partial(_apply_if_current, self, basis, events, msg, root, model, doc, comm, curdoc_events)
        with set_curdoc(doc):
            state.execute(update, schedule=True)
        return False

    return _apply_update


def _apply_if_current(
    widget: Any,
    basis: dict[str, int],
    events: dict[str, Any],
    msg: dict[str, Any],
    root: Any,
    model: Any,
    doc: Document,
    comm: Any,
    curdoc_events: dict[str, Any],
) -> None:
    """On the event loop: Panel's queued model update, less the properties the browser
    has changed since the update was made (the newer change's answer follows it)."""
    received = _received(widget)
    for attr in [attr for attr in basis if attr in msg and received.get(attr, 0) > basis[attr]]:
        del msg[attr]
    if msg:
        widget._scheduled_update_model(events, msg, root, model, doc, comm, curdoc_events)


def _patch_panel() -> None:
    """Install the two wrappers on Panel's Syncable (once per process)."""
    from panel.reactive import Syncable

    if getattr(Syncable, "_session_pool_patched", False):
        return
    Syncable._server_change = _count_browser_change(Syncable._server_change)  # type: ignore[method-assign]
    Syncable._apply_update = _skip_stale_updates(Syncable._apply_update)  # type: ignore[method-assign]
    Syncable._session_pool_patched = True  # type: ignore[attr-defined]


def install(threads: int) -> None:
    """Make Panel use this pool for session callbacks (replacing the plain pool
    `--num-threads` made; Panel reads `state._thread_pool` at each event), and
    make its queued model updates skip what the browser has changed since."""
    from panel.io.state import state

    _patch_panel()
    current = state._thread_pool
    if isinstance(current, SessionOrderedPool):
        return
    state._thread_pool = SessionOrderedPool(threads)
    if current is not None:
        current.shutdown(wait=False)
