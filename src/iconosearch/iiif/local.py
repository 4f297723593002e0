"""A local folder of images → real IIIF: Presentation 3 (iiif-prezi3) + an Image API 3.0 service.

So that a library without IIIF infrastructure is indexed exactly like a IIIF one, the folder becomes::

    <out>/collection.json                       Collection of one Manifest per image
    <out>/manifests/<slug>.json                 Manifest: one Canvas painted with the image
    <out>/images/<slug>/info.json               ImageService3, level 2 (level 0 for "no derivatives")
    <out>/images/<slug>/full/<w>,<h>/0/default.jpg   each listed size, rendered ahead (3.0 canonical form)
    <out>/images/<slug>/full/max/0/default.jpg  the largest size served: the master every request is cut from

The API serves the tree at ``/iiif/local/<collection>`` and renders every other request (regions, sizes,
rotations, formats) on the fly from the master (:mod:`iconosearch.iiif.image_server`). Items under a
"no derivatives" licence get a level-0 description (listed sizes only): the service refuses to crop them.

All ids are under ``base_url`` (where the API serves ``<out>``, at ``/iiif/local/<collection>``).
Optional sidecar ``metadata.csv`` or ``metadata.json`` (a list of objects) in the folder, keyed by
``file`` (path relative to the folder), with ``title``, ``description``, ``date``, ``creator``,
``rights`` (URI), ``attribution``, ``source`` and ``subjects`` (``;``-separated). Rebuilding is
incremental: an image whose bytes did not change keeps its derivatives.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iconosearch.iiif.image_server import EXTRA_FEATURES, FORMATS, QUALITIES, TILE
from iconosearch.images import ImageRejectedError, open_image, probe_image
from iconosearch.rights import allows_derivatives, canonical_rights

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".gif", ".bmp"})
SIZES = (96, 192, 384, 768, 1536)
"""Long sides of the precomputed sizes (only those smaller than the original)."""
MAX_SIDE = 2048
"""Long side of the largest derivative ("max"); originals are never served as they are."""
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
_DATE = re.compile(r"^\s*(-?\d{1,4})(?:-(\d{2})(?:-(\d{2}))?)?(?:\s*/\s*(-?\d{1,4}))?\s*$")


@dataclass(frozen=True, slots=True)
class LocalBuild:
    collection_url: str
    manifests: int
    skipped: dict[str, str] = field(default_factory=dict)
    """File → reason for images that could not be used."""


def read_sidecar(folder: Path) -> dict[str, dict[str, str]]:
    """Sidecar rows by relative file path (``metadata.csv`` wins over ``metadata.json``)."""
    rows: list[dict[str, Any]] = []
    csv_path, json_path = folder / "metadata.csv", folder / "metadata.json"
    if csv_path.is_file():
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    elif json_path.is_file():
        data = json.loads(json_path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError(f"{json_path} must hold a list of objects")
        rows = [r for r in data if isinstance(r, dict)]
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        file = str(row.get("file") or "").strip()
        if file:
            out[Path(file).as_posix()] = {k: str(v).strip() for k, v in row.items() if v not in (None, "")}
    return out


def _slug(rel: str) -> str:
    stem = _SLUG.sub("-", rel.rsplit(".", 1)[0]).strip("-") or "image"
    return f"{stem[:60]}-{hashlib.sha256(rel.encode()).hexdigest()[:6]}"


def _nav_date(text: str) -> str | None:
    m = _DATE.match(text)
    if not m:
        return None
    year = int(m.group(1))
    if not 0 < year <= 9999:
        return None
    return f"{year:04d}-{m.group(2) or '01'}-{m.group(3) or '01'}T00:00:00Z"


def _sizes(width: int, height: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for side in SIZES:
        if side >= max(width, height):
            break
        scale = side / max(width, height)
        out.append((max(1, round(width * scale)), max(1, round(height * scale))))
    return out


def _write_derivatives(src: Path, dest: Path, *, max_pixels: int) -> tuple[int, int, list[tuple[int, int]]]:
    """Level-0 tree for one image; returns (width, height of max, listed sizes)."""
    probe_image(src, max_pixels=max_pixels)  # refuses bombs from the header, before any decoding
    big = open_image(src, max_pixels=max_pixels, max_side=MAX_SIDE)
    width, height = big.size
    sizes = _sizes(width, height)
    for w, h in [*sizes, (width, height)]:
        folder = dest / "full" / (f"{w},{h}" if (w, h) != (width, height) else "max") / "0"
        folder.mkdir(parents=True, exist_ok=True)
        img = big if (w, h) == (width, height) else big.resize((w, h))
        tmp = folder / "default.jpg.tmp"
        img.save(tmp, "JPEG", quality=88)
        tmp.replace(folder / "default.jpg")
    # The full size is also reachable as w,h, so every listed size has its canonical path.
    same = dest / "full" / f"{width},{height}" / "0"
    same.mkdir(parents=True, exist_ok=True)
    (same / "default.jpg").write_bytes((dest / "full" / "max" / "0" / "default.jpg").read_bytes())
    return width, height, [*sizes, (width, height)]


def build_local_iiif(
    folder: Path, out: Path, *, base_url: str, label: str, max_pixels: int = 64_000_000
) -> LocalBuild:
    """Write the static IIIF of ``folder`` into ``out``; unusable images are skipped with a reason."""
    from iiif_prezi3 import Collection, KeyValueString, Manifest

    if not folder.is_dir():
        raise FileNotFoundError(f"local collection folder {folder} does not exist")
    base = base_url.rstrip("/")
    out.mkdir(parents=True, exist_ok=True)
    sidecar = read_sidecar(folder)
    stamps_path = out / "stamps.json"
    stamps: dict[str, Any] = json.loads(stamps_path.read_text()) if stamps_path.is_file() else {}
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    collection = Collection(id=f"{base}/collection.json", label={"none": [label]})
    skipped: dict[str, str] = {}
    manifests = 0
    for path in files:
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(out.name + "/"):
            continue
        slug = _slug(rel)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        image_dir = out / "images" / slug
        stamp = stamps.get(rel)
        try:
            if (
                stamp
                and stamp.get("sha256") == digest
                and (image_dir / "full" / "max" / "0" / "default.jpg").is_file()
            ):
                width, height = stamp["width"], stamp["height"]
                sizes = [tuple(s) for s in stamp["sizes"]]
            else:
                width, height, sizes = _write_derivatives(path, image_dir, max_pixels=max_pixels)
                stamps[rel] = {"sha256": digest, "width": width, "height": height, "sizes": sizes}
        except ImageRejectedError as exc:
            skipped[rel] = exc.reason
            log.warning("local image %s skipped: %s", rel, exc)
            continue
        service_id = f"{base}/images/{slug}"
        meta = sidecar.get(rel, {})
        info = image_info(service_id, (width, height), sizes, canonical_rights(meta.get("rights")))
        (image_dir / "info.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        manifest = _manifest(Manifest, KeyValueString, base, slug, rel, meta, info)
        (out / "manifests").mkdir(exist_ok=True)
        (out / "manifests" / f"{slug}.json").write_text(manifest.json(indent=1), encoding="utf-8")
        collection.add_item_by_reference(manifest)
        manifests += 1
    (out / "collection.json").write_text(collection.json(indent=1), encoding="utf-8")
    stamps_path.write_text(json.dumps(stamps), encoding="utf-8")
    return LocalBuild(collection_url=f"{base}/collection.json", manifests=manifests, skipped=skipped)


def image_info(
    service_id: str, size: tuple[int, int], sizes: list[tuple[int, int]], rights: str | None
) -> dict[str, Any]:
    """The info.json of one image: level 2 with tiles, or level 0 (listed sizes) when it must not be cut."""
    width, height = size
    info: dict[str, Any] = {
        "@context": "http://iiif.io/api/image/3/context.json",
        "id": service_id,
        "type": "ImageService3",
        "protocol": "http://iiif.io/api/image",
        "profile": "level2",
        "width": width,
        "height": height,
        "sizes": [{"width": w, "height": h} for w, h in sizes],
    }
    if allows_derivatives(rights):
        factors = [f for f in (1, 2, 4, 8) if f == 1 or max(width, height) / f >= TILE // 2]
        info["tiles"] = [{"width": TILE, "scaleFactors": factors}]
        info["extraQualities"] = [q for q in QUALITIES if q != "default"]
        info["extraFormats"] = [f for f in FORMATS if f != "jpg"]
        info["extraFeatures"] = list(EXTRA_FEATURES)
    else:
        info["profile"] = "level0"
    if rights:
        info["rights"] = rights
    return info


def _manifest(
    manifest_cls: Any,
    kv_cls: Any,
    base: str,
    slug: str,
    rel: str,
    meta: dict[str, str],
    info: dict[str, Any],
) -> Any:
    width, height, service_id = info["width"], info["height"], info["id"]
    title = meta.get("title") or Path(rel).stem
    manifest = manifest_cls(id=f"{base}/manifests/{slug}.json", label={"none": [title]})
    if meta.get("description"):
        manifest.summary = {"none": [meta["description"]]}
    pairs = []
    for key, label in (("title", "Title"), ("creator", "Creator"), ("date", "Date"), ("subjects", "Subject")):
        if meta.get(key):
            values = (
                [v.strip() for v in meta[key].split(";") if v.strip()] if key == "subjects" else [meta[key]]
            )
            pairs.append(kv_cls(label={"en": [label]}, value={"none": values}))
    if meta.get("source"):
        pairs.append(kv_cls(label={"en": ["Source"]}, value={"none": [meta["source"]]}))
    rights = canonical_rights(meta.get("rights"))
    if meta.get("rights") and rights is None:
        # Presentation 3 allows only CC and RightsStatements.org URIs in ``rights``; others stay visible.
        pairs.append(kv_cls(label={"en": ["Rights"]}, value={"none": [meta["rights"]]}))
    if pairs:
        manifest.metadata = pairs
    if rights is not None:
        manifest.rights = rights
    if meta.get("attribution"):
        manifest.requiredStatement = kv_cls(
            label={"en": ["Attribution"]}, value={"none": [meta["attribution"]]}
        )
    nav = _nav_date(meta.get("date", ""))
    if nav:
        manifest.navDate = nav
    if meta.get("source", "").startswith(("http://", "https://")):
        manifest.homepage = [
            {"id": meta["source"], "type": "Text", "label": {"none": [title]}, "format": "text/html"}
        ]
    canvas = manifest.make_canvas(id=f"{base}/manifests/{slug}/canvas/1", width=width, height=height)
    page = canvas.add_image(
        image_url=f"{service_id}/full/max/0/default.jpg",
        anno_page_id=f"{base}/manifests/{slug}/canvas/1/page",
        anno_id=f"{base}/manifests/{slug}/canvas/1/image",
        format="image/jpeg",
        width=width,
        height=height,
    )
    # The listed sizes travel with the manifest, so harvesters need not fetch info.json per image.
    page.items[0].body.service = [{k: info[k] for k in ("id", "type", "profile", "width", "height", "sizes")}]
    return manifest
