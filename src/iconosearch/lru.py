"""The least-recently-used bound shared by the in-memory caches: an ``OrderedDict``, most recent last."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def keep(cache: OrderedDict[K, V], items: Mapping[K, V], bound: int) -> None:
    """Put ``items`` in ``cache`` as its most recently used, then drop the least recently used past
    ``bound``. Callers that share a cache between threads hold their lock around this."""
    for key, value in items.items():
        cache[key] = value
        cache.move_to_end(key)
    while len(cache) > bound:
        cache.popitem(last=False)
