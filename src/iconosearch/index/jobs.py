"""What ``iconosearch index`` does, as library calls: build or update a version of the named collections,
switch back to an older version.

The command line parses and presents; these check the request (index kind, collection names) and run it,
so the same checks hold for any caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from iconosearch.harvest.state import harvested_collections
from iconosearch.index import faiss_index
from iconosearch.index.versions import BuildOptions, Progress

if TYPE_CHECKING:
    from iconosearch.config import Settings
    from iconosearch.index.store import IndexStore, IndexVersion


class IndexRequestError(ValueError):
    """A request that names what does not exist (an index kind, a collection)."""


def build_options(kind: str | None, shards: int = 1, memory_gb: float | None = None) -> BuildOptions:
    """Options for a build; an unknown ``kind`` raises :class:`IndexRequestError` naming the known ones."""
    if kind is not None and kind not in faiss_index.KINDS:
        raise IndexRequestError(f"unknown --kind {kind!r}; choose one of {', '.join(faiss_index.KINDS)}")
    if memory_gb is None:
        return BuildOptions(kind=kind, shards=shards)
    return BuildOptions(kind=kind, shards=shards, memory_budget=int(memory_gb * 1024**3))


def check_collections(settings: Settings, collections: Sequence[str]) -> None:
    """Refuse names that are neither configured nor harvested (a IIIF URL harvested by itself is named)."""
    known = set(settings.collections) | harvested_collections(settings.data_dir)
    unknown = [c for c in collections if c not in known]
    if unknown:
        names = ", ".join(sorted(known)) or "none"
        listed = ", ".join(unknown)
        raise IndexRequestError(f"unknown collection(s): {listed} (configured or harvested: {names})")


def index_collections(
    settings: Settings,
    name: str,
    collections: Sequence[str],
    *,
    model: str | None = None,
    incremental: bool = False,
    options: BuildOptions | None = None,
    progress: Progress | None = None,
) -> IndexVersion:
    """Embed the collections' harvested images with ``model`` (default: the configured one) and build a
    new version of index ``name`` (or update the served one), switched in atomically."""
    from iconosearch.index.builder import build_index
    from iconosearch.models.embedder import load_embedder

    check_collections(settings, collections)
    embedder = load_embedder(model or settings.model)
    return build_index(
        settings, name, collections, embedder, incremental=incremental, progress=progress, options=options
    )


def roll_back(store: IndexStore, version: str | None) -> tuple[str | None, str]:
    """Switch CURRENT to ``version``, or to the newest intact older one; returns (previous, now served)."""
    from iconosearch.index.verify import rollback_target

    before = store.current_name()
    with store.building():  # a writer like any other: not while a build is switching CURRENT
        target = rollback_target(store, version)
        store.switch(target)
    return before, target
