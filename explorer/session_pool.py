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


def apply_changes(doc: Document, widget: Any, events: dict[str, Any]) -> None:
    """What `Syncable._change_event` does, on a batch already taken from the widget."""
    from panel.io.state import set_curdoc

    with set_curdoc(doc):
        widget._process_events(events)


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
            fn, args, kwargs = apply_changes, (args[0], widget, events), {}
        future: Future[Any] = Future()
        with self._waiting_lock:
            queue = self._waiting.get(key)
            if queue is not None:  # this session is busy: after its earlier tasks
                if widget is not None and queue and _same_widget_batch(queue[-1], widget):
                    queue[-1][2][2].update(args[2])  # not started yet: one batch, newest values
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


def install(threads: int) -> None:
    """Make Panel use this pool for session callbacks (replacing the plain pool
    `--num-threads` made; Panel reads `state._thread_pool` at each event)."""
    from panel.io.state import state

    current = state._thread_pool
    if isinstance(current, SessionOrderedPool):
        return
    state._thread_pool = SessionOrderedPool(threads)
    if current is not None:
        current.shutdown(wait=False)
