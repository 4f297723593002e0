"""Which image URL a record's image is fetched from, and when the embedded service says too little."""

from __future__ import annotations

from iconosearch.iiif.image_api import image_url
from iconosearch.records import ImageRecord, ImageService


def image_key(record: ImageRecord, target: int) -> str | None:
    """What identifies the image to fetch: a changed key makes the record fetch its image again."""
    if record.service is not None:
        return f"{image_url(record.service, target)}"
    return record.static_url


def needs_info(svc: ImageService) -> bool:
    """Whether the embedded description is too thin to pick a size the server will serve."""
    if svc.level == 0 and not svc.sizes:
        return True
    # Without the size, level 1 (or unknown) could only ask for "w,", which upscales small images
    # (an error in 3.0); level 2 can ask for "!w,h", which never does.
    return (svc.level is None or svc.level <= 1) and not (svc.width and svc.height) and not svc.sizes


def merge_service(embedded: ImageService, info: ImageService) -> ImageService:
    """info.json is authoritative, but keeps the embedded id (servers sometimes report internal hosts)."""
    return ImageService(
        id=embedded.id,
        api_version=info.api_version,
        level=info.level if info.level is not None else embedded.level,
        width=info.width or embedded.width,
        height=info.height or embedded.height,
        sizes=info.sizes or embedded.sizes,
        max_width=info.max_width or embedded.max_width,
        max_height=info.max_height or embedded.max_height,
        max_area=info.max_area or embedded.max_area,
    )
