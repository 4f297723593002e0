"""What a harvest target names: a configured collection, or a IIIF URL that becomes a named collection."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from iconosearch.config import CollectionConfig, Settings

if TYPE_CHECKING:
    pass


class HarvestError(Exception):
    """A harvest that cannot start (unknown collection, unreachable or unusable source)."""


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
