"""The consistency check of one index version: FAISS ids, metadata rows and stored vectors agree."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from iconosearch.index import faiss_index
from iconosearch.index.faiss_index import FaissSpec
from iconosearch.index.metadata import Metadata
from iconosearch.index.store import IndexVersion


@dataclass(frozen=True, slots=True)
class ConsistencyReport:
    version: str
    count: int
    faiss_only: tuple[str, ...] = ()
    """Ids FAISS has that the metadata lacks."""
    metadata_only: tuple[str, ...] = ()
    vector_rows_ok: bool = True
    """``ids.npy`` matches the metadata rows and the vectors have the manifest's shape."""
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.faiss_only and not self.metadata_only and self.vector_rows_ok and not self.problems


def check_consistency(version: IndexVersion) -> ConsistencyReport:
    """FAISS ids == metadata ids == ``ids.npy``, and the vectors match the manifest."""
    m = version.manifest
    problems: list[str] = []
    spec = FaissSpec(m.faiss_type, dict(m.faiss_params))
    index = faiss_index.read(version.faiss_path, spec)
    faiss_ids = {int(i) for i in faiss_index.ids_of(index)}
    if index.ntotal != len(faiss_ids):
        problems.append(f"FAISS holds {index.ntotal} vectors but {len(faiss_ids)} distinct ids")
    meta = Metadata(version.metadata_path)
    try:
        rows = {iid: row for iid, row, _, _ in meta.rows_by_id()}
    finally:
        meta.close()
    ids = np.load(version.ids_path)
    vectors = np.load(version.vectors_path, mmap_mode="r")
    rows_ok = (
        vectors.shape == (len(ids), m.dim)
        and len(rows) == len(ids)
        and all(int(ids[row]) == iid for iid, row in rows.items() if 0 <= row < len(ids))
        and all(0 <= row < len(ids) for row in rows.values())
    )
    if m.count != len(rows):
        problems.append(f"manifest count {m.count} ≠ {len(rows)} metadata records")
    fmt = "{:016x}".format
    return ConsistencyReport(
        version=m.version,
        count=len(rows),
        faiss_only=tuple(sorted(fmt(i) for i in faiss_ids - rows.keys())),
        metadata_only=tuple(sorted(fmt(i) for i in rows.keys() - faiss_ids)),
        vector_rows_ok=bool(rows_ok),
        problems=tuple(problems),
    )
