"""How close is close? Relevance bands ("strong / possible / weak match") for a model's similarity scores.

Raw cosine similarities mean nothing to a researcher, and their range differs from model to model (and
between text→image and image→image queries). So each model gets thresholds *calibrated on evaluation
data* (:mod:`iconosearch.evaluation.calibration` computes them) and stored with the model as
``relevance.json``: in the model's folder for ``local-dir:`` models and the embedded default, and under
``<data_dir>/models/relevance/<fingerprint>.json`` for any model (a deployment's own calibration, which
wins). Thresholds are only used for the
exact weights they were measured on (the fingerprint must match): a rebuilt model loses its bands until
it is calibrated again, rather than showing bands that no longer mean what they say.

The thresholds are quantiles of the scores of *unrelated* image/query pairs: a "strong" match scores
higher than all but ``1 %`` of unrelated images do, a "possible" one higher than all but ``10 %``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from iconosearch.query import Query

log = logging.getLogger(__name__)

FORMAT = "iconosearch-relevance/1"
FILE_NAME = "relevance.json"
Band = Literal["strong", "possible", "weak"]
QueryKind = Literal["text", "image"]
STRONG_FPR = 0.01
"""Share of unrelated pairs allowed to score as a strong match."""
POSSIBLE_FPR = 0.10
"""Share of unrelated pairs allowed to score as a possible match."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Cosine thresholds of one query kind, with what they were measured to mean."""

    strong: float
    possible: float
    strong_recall: float
    """Share of true matches (an item queried by its own title) that score as strong."""
    possible_recall: float
    """Share of true matches that score at least as possible."""

    def band(self, score: float) -> Band:
        if score >= self.strong:
            return "strong"
        if score >= self.possible:
            return "possible"
        return "weak"


@dataclass(frozen=True, slots=True)
class Calibration:
    """Relevance thresholds of one model (by fingerprint), per query kind."""

    model_spec: str
    model_fingerprint: str
    measured_on: str
    """What evaluation data the thresholds come from (name and size), for the model card and about page."""
    n_queries: int
    n_images: int
    text: Thresholds
    image: Thresholds

    def for_kind(self, kind: QueryKind) -> Thresholds:
        return self.text if kind == "text" else self.image

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            **asdict(self),
            "strong_fpr": STRONG_FPR,
            "possible_fpr": POSSIBLE_FPR,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        if data.get("format") != FORMAT:
            raise ValueError(f"not an {FORMAT} file (format {data.get('format')!r})")
        return cls(
            model_spec=str(data["model_spec"]),
            model_fingerprint=str(data["model_fingerprint"]),
            measured_on=str(data["measured_on"]),
            n_queries=int(data["n_queries"]),
            n_images=int(data["n_images"]),
            text=Thresholds(**data["text"]),
            image=Thresholds(**data["image"]),
        )

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path


def query_kind(query: Query) -> QueryKind | None:
    """``text`` or ``image`` when the query's score is a cosine of that kind; ``None`` otherwise.

    Hybrid (keyword) scores are rank-fusion scores, and a query mixing words and images scores on a
    scale between the two kinds: neither was calibrated, so they get no band rather than a wrong one.
    """
    if query.keywords or query.keyword_any:
        return None
    kinds = {"text" if t.kind == "text" else "image" for t in query.terms if t.weight > 0}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    return "text" if kind == "text" else "image"


def model_folder(spec: str) -> Path | None:
    """The folder that holds a model's files and documents (model card, calibration), when it has one."""
    from iconosearch.models.specs import ModelSpecError, parse_spec

    if spec == "iconosearch-lite":
        return Path(__file__).resolve().parent / "models" / "lite"
    try:
        parsed = parse_spec(spec)
    except ModelSpecError:
        return None
    return parsed.path if parsed.kind == "local-dir" else None


def calibration_paths(spec: str, fingerprint: str, data_dir: Path | None) -> list[Path]:
    """Where the calibration of a model may be stored, in the order they are used: the deployment's own
    (measured on its collections) before the one that ships with the model."""
    folder = model_folder(spec)
    paths = [stored_path(data_dir, fingerprint)] if data_dir is not None else []
    return paths + ([folder / FILE_NAME] if folder is not None else [])


def default_target(spec: str, fingerprint: str, data_dir: Path) -> Path:
    """Where ``iconosearch models calibrate`` writes: with a model folder of one's own (``local-dir:``),
    else in the data directory. (The embedded default's file is written there with ``--out``.)"""
    folder = model_folder(spec)
    if folder is not None and spec != "iconosearch-lite":
        return folder / FILE_NAME
    return stored_path(data_dir, fingerprint)


def stored_path(data_dir: Path, fingerprint: str) -> Path:
    """The data directory's place for a model's calibration (models without a folder of their own)."""
    return data_dir / "models" / "relevance" / f"{fingerprint[:32]}.json"


def load_calibration(spec: str, fingerprint: str, data_dir: Path | None = None) -> Calibration | None:
    """The calibration of exactly these weights, or ``None`` (no bands) when there is none."""
    for path in calibration_paths(spec, fingerprint, data_dir):
        if not path.is_file():
            continue
        try:
            cal = Calibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring relevance calibration %s: %s", path, exc)
            continue
        if cal.model_fingerprint == fingerprint:
            return cal
        log.info("relevance calibration %s is for other weights of %s; no relevance bands", path, spec)
    return None


def bands(scores: Sequence[float], thresholds: Thresholds | None) -> list[Band | None]:
    return [thresholds.band(s) if thresholds is not None else None for s in scores]
