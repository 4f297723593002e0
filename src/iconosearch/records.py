"""Image records: what the harvest stage hands to every later stage.

One record is one image on one canvas of one manifest (canvas × painting annotation). Records are
plain frozen dataclasses so that parsing stays pure and every stage can be tested without I/O.
Texts keep their languages: a ``LangMap`` maps a BCP-47 tag (or ``"none"``) to its values.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

LangMap = dict[str, list[str]]
"""Language map flattened from IIIF: ``{"en": ["A map"], "none": ["f. 1r"]}``."""

NO_LANG = "none"

RightsClass = Literal["open", "restricted", "unknown"]


@dataclass(frozen=True, slots=True)
class MetadataPair:
    """A label/value pair (IIIF ``metadata`` entry or ``requiredStatement``)."""

    label: LangMap
    value: LangMap


@dataclass(frozen=True, slots=True)
class ImageService:
    """What an IIIF Image API service allows, as far as the harvest needs to know it."""

    id: str
    """Base URI of the image service (no trailing slash)."""
    api_version: int
    """Image API major version: 1, 2 or 3."""
    level: int | None = None
    """Compliance level 0/1/2 when declared."""
    width: int | None = None
    height: int | None = None
    sizes: tuple[tuple[int, int], ...] = ()
    """Sizes a level-0 server is known to serve, as (width, height)."""
    max_width: int | None = None
    max_height: int | None = None
    max_area: int | None = None


@dataclass(frozen=True, slots=True)
class Link:
    """A link to a resource elsewhere (homepage, seeAlso, rendering, logo)."""

    id: str
    label: LangMap = field(default_factory=dict)
    format: str | None = None


@dataclass(frozen=True, slots=True)
class Provider:
    """The institution responsible for the resource (v3 ``provider``; v2 ``attribution``/``logo``)."""

    label: LangMap
    id: str | None = None
    homepage: str | None = None
    logo: str | None = None


@dataclass(frozen=True, slots=True)
class DateRange:
    """A date span in whole years (inclusive). Years can be negative (BCE) and precede year 1."""

    start_year: int
    end_year: int
    source: str = "navDate"
    """Where the dates came from: ``navDate`` or ``metadata:<label>``."""

    @property
    def century(self) -> int:
        """Century of the start year, 1-based (1901 → 20, -50 → -1)."""
        y = self.start_year
        return (y - 1) // 100 + 1 if y > 0 else -((-y) // 100 + 1)


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One searchable image with everything a result must show and link back to."""

    id: str
    """Stable id: :func:`record_id` of manifest, canvas and image ids."""
    collection: str
    """Name of the configured collection it was harvested for."""
    manifest_id: str
    canvas_id: str
    image_id: str
    """Id of the painting annotation's body (the image resource)."""
    canvas_index: int = 0
    region: str | None = None
    """``x,y,w,h`` on the *canvas* where the image is painted, when that is only part of the canvas (an
    overlay), or the detail a record shows: what viewers are pointed at (``#xywh=``). It says nothing
    about the image's own pixels."""
    image_region: str | None = None
    """``x,y,w,h`` in the *image's* own pixels when only that part of it is painted (a selector on the
    image resource) or shown; None: the whole image. Thumbnails and Image API URLs crop by this, never by
    ``region``: the two agree only when canvas and image sizes match (:mod:`iconosearch.iiif.regions`)."""
    service: ImageService | None = None
    static_url: str | None = None
    """Direct image URL, used when there is no image service."""
    thumbnail: str | None = None
    width: int | None = None
    height: int | None = None
    canvas_label: LangMap = field(default_factory=dict)
    manifest_label: LangMap = field(default_factory=dict)
    summary: LangMap = field(default_factory=dict)
    metadata: tuple[MetadataPair, ...] = ()
    rights: str | None = None
    """Rights or licence URI (v3 ``rights``; v2 ``license``)."""
    required_statement: MetadataPair | None = None
    """Attribution to show verbatim (v3 ``requiredStatement``; v2 ``attribution``)."""
    providers: tuple[Provider, ...] = ()
    date: DateRange | None = None
    homepage: tuple[Link, ...] = ()
    part_of: tuple[str, ...] = ()
    """Labels (or ids, when unlabelled) of the collections the manifest belongs to."""
    caption: LangMap = field(default_factory=dict)
    """Text used for keyword search, training and evaluation (built by the caption rule)."""


_LOCAL_IIIF = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]+(?:/[^?#]*)?/iiif/local/(?P<rest>[^?#]+)$")
"""IIIF that iconosearch generates from a local folder, wherever it is served: ``…/iiif/local/<name>/…``."""


def local_identity(url: str) -> str | None:
    """``local:<collection>/<path>`` for a URL of iconosearch's local-folder IIIF, else None.

    The scheme, host, port and any path prefix in front of ``/iiif/local/`` say where iconosearch is
    served, not what the object is, so they are left out: the same folder served on another port or
    host keeps its ids. What remains is the collection name and the file's slug (which is made from the
    file's path relative to the folder, see ``iiif.local``).
    """
    m = _LOCAL_IIIF.match(url)
    return f"local:{m['rest']}" if m else None


def record_id(manifest_id: str, canvas_id: str, image_id: str) -> str:
    """Stable 16-hex-digit id of an image record: it depends only on what identifies the object.

    For a source's IIIF that is its canonical manifest, canvas and image ids. For iconosearch's own
    local-folder IIIF it is the collection name and the file (manifest and canvas, see
    :func:`local_identity`); never the address iconosearch is served at. The same inputs always give
    the same id.
    """
    local = local_identity(manifest_id)
    if local is not None:
        key = f"{local}\n{local_identity(canvas_id) or canvas_id}"
    else:
        key = f"{manifest_id}\n{canvas_id}\n{image_id}"
    return _hex_id(key)


def legacy_record_id(manifest_id: str, canvas_id: str, image_id: str) -> str:
    """The id 0.1 gave a record (a hash of its full URLs); kept only to map old links to new ids."""
    return _hex_id(f"{manifest_id}\n{canvas_id}\n{image_id}")


def _hex_id(key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()
    # 63 bits, so that the id also fits FAISS's signed 64-bit ids (see :func:`id_to_int64`).
    return f"{int(digest[:16], 16) >> 1:016x}"


def id_to_int64(rid: str) -> int:
    """The FAISS id of a record id."""
    return int(rid, 16)


@dataclass(frozen=True, slots=True)
class HarvestedImage:
    """A record whose image has been fetched: what the embedding stage consumes."""

    record: ImageRecord
    content_hash: str
    """sha256 of the image bytes as fetched; also the embedding cache key (with the model fingerprint)."""
    path: Path
    """The cached image file."""


def record_to_dict(record: ImageRecord) -> dict[str, Any]:
    """Plain JSON-able data of a record (for SQLite storage and the API)."""
    return asdict(record)


def record_from_dict(data: dict[str, Any]) -> ImageRecord:
    """Inverse of :func:`record_to_dict`; tolerant of lists where tuples are expected (JSON round trip)."""
    d = dict(data)
    service = d.get("service")
    if service is not None:
        d["service"] = ImageService(**{**service, "sizes": tuple(tuple(s) for s in service.get("sizes", ()))})
    d["metadata"] = tuple(MetadataPair(**m) for m in d.get("metadata", ()))
    if d.get("required_statement") is not None:
        d["required_statement"] = MetadataPair(**d["required_statement"])
    d["providers"] = tuple(Provider(**p) for p in d.get("providers", ()))
    if d.get("date") is not None:
        d["date"] = DateRange(**d["date"])
    d["homepage"] = tuple(Link(**h) for h in d.get("homepage", ()))
    d["part_of"] = tuple(d.get("part_of", ()))
    return ImageRecord(**d)
