"""Source kinds: the ``kind`` of a ``[collections.NAME]`` table, as a registry of handlers.

Like the text towers in :mod:`iconosearch.models.towers`, each kind says which location it needs
(checked when the configuration is read) and how to get its :class:`SourceHandler`, which is imported only
when a harvest needs it: the harvest package imports the configuration, never the reverse, and reading
the configuration stays cheap. A new kind is a module with a handler (the built-in ones are in
:mod:`iconosearch.harvest.walk` and :mod:`iconosearch.harvest.change_stream`) and one
:func:`register_source_kind` call here; ``docs/extending.md`` walks through an OAI-PMH source.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from iconosearch.config import CollectionConfig, Settings
    from iconosearch.datadir import DataDir
    from iconosearch.harvest.run import HarvestRun, ManifestRef


@dataclass
class SourceSetup:
    """What a harvest of a configured collection starts from; a kind's ``prepare`` may change it."""

    settings: Settings
    name: str
    cfg: CollectionConfig | None
    """None for an ad-hoc URL."""
    data: DataDir
    source: str
    """The URL (or file) discovery starts from."""
    mounts: dict[str, Path] = field(default_factory=dict)
    """URL prefixes answered from local folders instead of the network."""
    file_roots: list[Path] = field(default_factory=list)
    """Folders that ``file://`` URLs may read."""
    skipped_local: dict[str, str] = field(default_factory=dict)
    """Local files left out while preparing (path → reason), recorded as skips."""


async def _nothing_to_prepare(setup: SourceSetup) -> None:
    return None


@dataclass(frozen=True, slots=True)
class SourceHandler:
    """How a harvest of one source kind runs."""

    discover: Callable[[HarvestRun], Awaitable[list[ManifestRef]]]
    """The manifests to read (deleting what the source says is gone)."""
    prepare: Callable[[SourceSetup], Awaitable[None]] = _nothing_to_prepare
    """Work before any request: build local IIIF, allow a file to be read."""


Needs = Literal["url", "path", "path-or-url"]


@dataclass(frozen=True, slots=True)
class SourceKind:
    kind: str
    needs: Needs
    """The location a collection of this kind must configure."""
    handler: Callable[[], SourceHandler]
    what: str | None = None
    """What the location holds, for the message when it is missing."""

    def location_problem(self, url: str | None, path: Path | None) -> str | None:
        """Why a collection of this kind with this url/path cannot be harvested; None when it can."""
        have = {"url": url is not None, "path": path is not None}
        ok = (have["url"] or have["path"]) if self.needs == "path-or-url" else have[self.needs]
        if ok:
            return None
        needs = "'path' or 'url'" if self.needs == "path-or-url" else f"'{self.needs}'"
        return f"a '{self.kind}' collection needs {needs}" + (f" ({self.what})" if self.what else "")


_KINDS: dict[str, SourceKind] = {}


def register_source_kind(kind: SourceKind) -> None:
    """Make ``kind.kind`` usable in configuration; registering a kind twice is a programming error."""
    if kind.kind in _KINDS:
        raise ValueError(f"source kind {kind.kind!r} is already registered")
    _KINDS[kind.kind] = kind


def source_kinds() -> list[str]:
    return sorted(_KINDS)


def source_kind(kind: str) -> SourceKind:
    """The registered kind; an unknown one raises :class:`ValueError` naming the known ones."""
    found = _KINDS.get(kind)
    if found is None:
        raise ValueError(f"unknown collection kind {kind!r}; known: {', '.join(source_kinds())}")
    return found


def _lazy(module: str, name: str) -> Callable[[], SourceHandler]:
    """A handler imported on first use: harvest modules import the configuration, not the reverse."""

    def load() -> SourceHandler:
        handler = getattr(importlib.import_module(module), name)
        assert isinstance(handler, SourceHandler)
        return handler

    return load


register_source_kind(SourceKind("collection", "url", _lazy("iconosearch.harvest.walk", "COLLECTION_SOURCE")))
register_source_kind(SourceKind("manifest", "url", _lazy("iconosearch.harvest.walk", "MANIFEST_SOURCE")))
register_source_kind(
    SourceKind(
        "manifest-list",
        "path-or-url",
        _lazy("iconosearch.harvest.walk", "MANIFEST_LIST_SOURCE"),
        "a text file of URLs",
    )
)
register_source_kind(
    SourceKind("changes", "url", _lazy("iconosearch.harvest.change_stream", "CHANGES_SOURCE"))
)
register_source_kind(
    SourceKind("local", "path", _lazy("iconosearch.harvest.walk", "LOCAL_SOURCE"), "a folder of images")
)
