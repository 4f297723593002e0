"""A deadline for the work of one request, so that work whose request has timed out stops.

Threads cannot be killed, so expired work is stopped cooperatively: the API sets a deadline before
running engine work in a worker thread, and the engine calls :func:`check` between its expensive
steps (before decoding an image, before embedding it, before searching). Work that has not started
when its request times out is never started at all (see ``iconosearch.api.admission``).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("iconosearch_deadline", default=None)


class DeadlineExceededError(Exception):
    """The request this work belongs to has already timed out."""


def check() -> None:
    """Raise :class:`DeadlineExceededError` when the current work's deadline has passed."""
    when = _deadline.get()
    if when is not None and time.monotonic() > when:
        raise DeadlineExceededError("the request timed out; its work was stopped")


def run_until(when: float, fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(*args)`` with the deadline ``when`` (a ``time.monotonic()`` value) in force."""
    token = _deadline.set(when)
    try:
        check()
        return fn(*args)
    finally:
        _deadline.reset(token)
