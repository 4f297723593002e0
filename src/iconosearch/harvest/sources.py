"""Source kinds, and what a harvest target names: a configured collection, or a IIIF URL.

Source kinds (the ``kind`` of a ``[collections.NAME]`` table) are a registry, like the text towers in
:mod:`iconosearch.models.towers`: each kind says which location it needs (checked when the configuration
is read) and how to get its :class:`SourceHandler`, which is imported only when a harvest needs it, so
reading the configuration stays cheap. A new kind is a module with a handler and one
:func:`register_source_kind` call here (see ``docs/extending.md``).
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from iconosearch.config import CollectionConfig, Settings
from iconosearch.datadir import DataDir

if TYPE_CHECKING:
    from iconosearch.harvest.run import HarvestRun, ManifestRef


class HarvestError(Exception):
    """A harvest that cannot start (unknown collection, unreachable or unusable source)."""


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


def url_collection_name(url: str) -> str:
    """Name of an ad-hoc collection harvested by URL: host plus a short hash of the URL."""
    host = urlsplit(url).hostname or "local"
    return f"{host.replace(':', '-')}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def resolve_source(settings: Settings, name_or_url: str) -> tuple[str, CollectionConfig | None]:
    """(collection name, its config); config None for an ad-hoc URL whose kind is found by fetching it."""
    if name_or_url in settings.collections:
        return name_or_url, settings.collections[name_or_url]
    for name, cfg in settings.collections.items():
        if cfg.url == name_or_url:
            return name, cfg
    if name_or_url.startswith(("http://", "https://", "file://")):
        return url_collection_name(name_or_url), None
    known = ", ".join(sorted(settings.collections)) or "none configured"
    raise HarvestError(f"unknown collection {name_or_url!r} (configured: {known}); or give a IIIF URL")


def local_base_url(settings: Settings, name: str) -> str:
    """Public base URL of a local collection's static IIIF (served by the API at ``/iiif/local/``)."""
    base = settings.server.public_url or f"http://{settings.server.host}:{settings.server.port}"
    return f"{base.rstrip('/')}/iiif/local/{name}"
