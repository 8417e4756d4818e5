"""Work done in a thread for a served page, its answer shown on the page's event loop.

A thread may not touch a session's Bokeh models (no document lock): the answer is
handed to the loop as a next-tick callback of the session's document. Used by the
facet counts (explorer.filters) and by charts answered in SQL (explorer.visualize).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def answer_on_loop(
    pool: ThreadPoolExecutor, document: Any, work: Callable[[], T], show: Callable[[Future[T]], None], what: str
) -> None:
    """Run `work` in `pool`; when done, call `show(future)` on the loop of `document`
    (dropped if the page was closed meanwhile)."""
    future = pool.submit(work)

    def hand_over(_future: Future[T]) -> None:
        try:
            document.add_next_tick_callback(partial(show, future))
        except Exception:  # noqa: BLE001 - the page was closed meanwhile: nothing to show
            log.debug("%s for a closed session dropped", what)

    future.add_done_callback(hand_over)
