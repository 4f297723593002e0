"""IIIF Change Discovery (Activity Streams): what changed since the last crawl.

The walk follows the spec's consumer algorithm: start at the stream's ``last`` page, read each page's
activities newest first, follow ``prev``; stop at the first activity whose ``endTime`` is before the
last crawl; the newest activity about an object wins (later ones about it are ignored). ``Create`` and
``Update`` (and ``Add``) mean harvest the object, ``Delete`` (and ``Remove``) mean drop it, ``Move``
drops the old id and harvests ``target``, and ``Refresh`` ends the walk, because the publisher lists
every current resource after a refresh. :class:`ChangeWalker` holds that logic without I/O: the harvester
feeds it pages and asks whether to go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from iconosearch.iiif.document import DocumentSkippedError, Skip, describe, doc_type, link_id

ChangeAction = Literal["harvest", "delete"]


@dataclass(frozen=True, slots=True)
class Activity:
    type: str
    object_id: str | None
    object_type: str
    end_time: datetime | None
    target_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeStream:
    id: str
    first: str | None
    last: str | None
    total: int | None


@dataclass(frozen=True, slots=True)
class ChangePage:
    id: str
    prev: str | None
    next: str | None
    activities: tuple[Activity, ...]


def parse_time(value: Any) -> datetime | None:
    """An xsd:dateTime as an aware UTC datetime (naive values are taken as UTC)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_activity(obj: Any) -> Activity | None:
    if not isinstance(obj, dict):
        return None
    typ = doc_type(obj)
    target = obj.get("object")
    end = (
        parse_time(obj.get("endTime")) or parse_time(obj.get("startTime")) or parse_time(obj.get("published"))
    )
    return Activity(
        type=typ,
        object_id=link_id(target),
        object_type=doc_type(target).split(":")[-1] if isinstance(target, dict) else "",
        end_time=end,
        target_id=link_id(obj.get("target")),
    )


def parse_stream(doc: Any, *, fallback_id: str | None = None) -> ChangeStream:
    info = describe(doc)
    if info.kind != "change-stream" or not isinstance(doc, dict):
        raise DocumentSkippedError(
            Skip("malformed", f"a {info.kind} document, not an OrderedCollection", info.id)
        )
    total = doc.get("totalItems")
    return ChangeStream(
        id=info.id or fallback_id or "",
        first=link_id(doc.get("first")),
        last=link_id(doc.get("last")),
        total=total if isinstance(total, int) and not isinstance(total, bool) else None,
    )


def parse_page(doc: Any, *, fallback_id: str | None = None) -> ChangePage:
    info = describe(doc)
    if info.kind != "change-page" or not isinstance(doc, dict):
        raise DocumentSkippedError(
            Skip("wrong-kind", f"a {info.kind} document, not an OrderedCollectionPage", info.id)
        )
    items = doc.get("orderedItems")
    activities = tuple(
        a for a in (parse_activity(o) for o in (items if isinstance(items, list) else [])) if a
    )
    return ChangePage(
        id=info.id or fallback_id or "",
        prev=link_id(doc.get("prev")),
        next=link_id(doc.get("next")),
        activities=activities,
    )


@dataclass
class ChangeWalker:
    """Consumer state of one walk backwards through a change stream."""

    since: datetime | None
    """Time of the last crawl; None walks the whole stream (first crawl)."""
    actions: dict[str, ChangeAction] = field(default_factory=dict)
    """Object id → what to do, in the order decided (newest change first)."""
    object_types: dict[str, str] = field(default_factory=dict)
    newest: datetime | None = None
    """Newest ``endTime`` seen: the next crawl's ``since``."""
    done: bool = False
    pages: int = 0

    def feed(self, page: ChangePage) -> bool:
        """Apply one page (newest activity first); True when the walk should go on to ``page.prev``."""
        self.pages += 1
        for act in reversed(page.activities):
            if act.end_time is not None:
                if self.newest is None or act.end_time > self.newest:
                    self.newest = act.end_time
                if self.since is not None and act.end_time < self.since:
                    self.done = True
                    return False
            if act.type == "Refresh":
                self.done = True
                return False
            if act.object_id is None or act.object_id in self.actions:
                continue
            if act.type in ("Create", "Update", "Add"):
                self._decide(act.object_id, "harvest", act.object_type)
            elif act.type in ("Delete", "Remove"):
                self._decide(act.object_id, "delete", act.object_type)
            elif act.type == "Move":
                self._decide(act.object_id, "delete", act.object_type)
                if act.target_id and act.target_id not in self.actions:
                    self._decide(act.target_id, "harvest", act.object_type)
        if page.prev is None:
            self.done = True
        return not self.done

    def _decide(self, object_id: str, action: ChangeAction, object_type: str) -> None:
        self.actions[object_id] = action
        self.object_types[object_id] = object_type or "Manifest"

    @property
    def to_harvest(self) -> list[str]:
        return [i for i, a in self.actions.items() if a == "harvest"]

    @property
    def to_delete(self) -> list[str]:
        return [i for i, a in self.actions.items() if a == "delete"]
