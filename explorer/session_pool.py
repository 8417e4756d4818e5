"""The worker threads every session's callbacks run in, one session at a time each.

Panel's `--num-threads` pool runs every callback it is given at once, even two of
the same session: two quick changes of one widget could then be applied in the
wrong order (the older value last). This pool keeps each session's callbacks in
the order they came, one after another, as the single event loop did, while the
callbacks of different sessions run in parallel: one analyst's slow work never
waits for another's, and never overtakes itself.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from bokeh.document import Document


def _session_of(fn: Callable[..., Any], args: tuple[Any, ...]) -> int | None:
    """The Bokeh document a Panel task belongs to (Panel passes it as the first
    argument, or as the first argument of a partial), as a key."""
    for candidate in (*args[:1], *getattr(fn, "args", ())[:1]):
        if isinstance(candidate, Document):
            return id(candidate)
    return None


class SessionOrderedPool(ThreadPoolExecutor):
    """A thread pool that runs the tasks of one session in order, one at a time."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="session")
        self._waiting: dict[int, deque[tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]]] = {}
        self._waiting_lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        key = _session_of(fn, args)
        if key is None:  # not a session's task (a periodic callback): any thread
            return super().submit(fn, *args, **kwargs)
        future: Future[Any] = Future()
        with self._waiting_lock:
            queue = self._waiting.get(key)
            if queue is not None:  # this session is busy: after its earlier tasks
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
