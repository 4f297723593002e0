"""Admission control: a bounded number of requests work at once, the rest are refused fast.

0.1 ran every search in the event loop's shared thread pool with an unbounded queue: six 16-bit PNG
uploads took 7.5 GB and every other search waited behind them until it timed out (504), while the
timed-out work kept running. Here each kind of work has its own *lane*: a thread pool of ``workers``
threads and room for ``queue`` waiting requests. A request beyond that is answered at once with
503 + ``Retry-After`` instead of joining a queue. A slot is freed when the work really ends, not
when its request gives up, so work that outlives its request still counts against the bound.
Requests that time out before their work starts cancel it (it never runs); running work stops at
its next :func:`iconosearch.deadline.check`.

Image queries (decode + image tower) go to the ``image`` lane, everything else to ``search``, so
heavy uploads cannot starve ordinary searches of threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from iconosearch import deadline
from iconosearch.api.problems import ProblemError

T = TypeVar("T")

RETRY_AFTER_S = 2


class Lane:
    """A bounded thread pool that refuses work beyond ``workers + queue`` instead of queueing it."""

    def __init__(self, name: str, *, workers: int, queue: int) -> None:
        self.name = name
        self.capacity = workers + queue
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix=f"lane-{name}")
        self._lock = threading.Lock()
        self._in_use = 0

    @property
    def in_use(self) -> int:
        return self._in_use

    def _release(self, _: object) -> None:
        with self._lock:
            self._in_use -= 1

    async def run(self, fn: Callable[..., T], *args: object, timeout_s: float) -> T:
        """``fn(*args)`` in this lane's threads, within ``timeout_s``; 503 when the lane is full."""
        with self._lock:
            if self._in_use >= self.capacity:
                raise ProblemError(
                    503,
                    "busy",
                    f"the server is busy with {self._in_use} {self.name} requests; retry shortly",
                    retry_after=RETRY_AFTER_S,
                )
            self._in_use += 1
        until = time.monotonic() + timeout_s
        context = contextvars.copy_context()
        try:
            future = self._executor.submit(context.run, deadline.run_until, until, fn, *args)
        except RuntimeError:  # shut down
            self._release(None)
            raise
        future.add_done_callback(self._release)
        # wait_for cancels the wrapper on timeout, which cancels work that has not started yet.
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout=timeout_s)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
