"""What one harvest run did, and its outcome: ``ok``, ``partial`` or ``failed``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Outcome = Literal["ok", "partial", "failed"]


@dataclass
class HarvestSummary:
    collection: str
    source: str
    kind: str
    documents_fetched: int = 0
    documents_unchanged: int = 0
    manifests: int = 0
    records: int = 0
    """Live records of the collection after the run."""
    records_new: int = 0
    records_deleted: int = 0
    images_fetched: int = 0
    images_reused: int = 0
    """Images already in the cache under the same URL (no request made)."""
    images_failed: int = 0
    images_cached: int = 0
    """Live records of the collection whose image is cached after the run."""
    skipped: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    """Every failure in full (ref, stage, reason, detail), as also kept in ``state.sqlite``."""
    complete: bool = False
    """The walk saw the whole source (no listing failed, no ``--limit``): unseen records were deleted."""
    outcome: Outcome = "ok"
    """``ok``: every record and image succeeded or was skipped for a stated reason; ``partial``: some
    failed; ``failed``: failures, and nothing of the collection is usable (no record, or no image)."""
    requests: int = 0
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


EXIT_PARTIAL = 4
"""Exit status of a harvest in which some records or images failed."""
EXIT_FAILED = 5
"""Exit status of a harvest that failed as a whole: failures, and no usable record or image."""


def exit_code(summaries: Sequence[HarvestSummary], errors: Sequence[str]) -> int:
    """0 only when everything succeeded or was skipped for a stated reason; the worst case wins.

    1 when a harvest could not start, else :data:`EXIT_FAILED` / :data:`EXIT_PARTIAL` by the outcomes.
    """
    if errors:
        return 1
    outcomes = {s.outcome for s in summaries}
    if "failed" in outcomes:
        return EXIT_FAILED
    return EXIT_PARTIAL if "partial" in outcomes else 0


def outcome_of(s: HarvestSummary) -> Outcome:
    """``ok`` without failures; ``failed`` when nothing of the collection is usable; else ``partial``."""
    if not s.failed:
        return "ok"
    return "failed" if s.records == 0 or s.images_cached == 0 else "partial"
