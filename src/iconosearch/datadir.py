"""The data directory: where every stage keeps what it made.

Layout (all created on demand)::

    <data_dir>/
      state.sqlite                    harvest state: documents, records, failures (the indexer writes)
      cache/images/<ab>/<sha256>.<ext> fetched images, by content hash
      cache/embeddings/<fingerprint>/  embeddings by (image content hash, model fingerprint)
      cache/iiif-renders/<ab>/         images the local Image API service rendered (bounded, LRU)
      indexes/<name>/<version>/        one immutable index version (manifest, FAISS, metadata)
      indexes/<name>/CURRENT           the version readers use; replaced atomically by the indexer
      local-iiif/<collection>/         IIIF generated from local image folders (masters, info, manifests)
      models/                          fine-tuned models (usable as ``local-dir:`` specs)
      reports/                         benchmark reports

The indexer is the only writer; the API only reads, and only through ``CURRENT``, so it never sees a
half-written index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class DataDir:
    root: Path

    @property
    def state_db(self) -> Path:
        return self.root / "state.sqlite"

    @property
    def image_cache(self) -> Path:
        return self._dir("cache", "images")

    @property
    def embedding_cache(self) -> Path:
        return self._dir("cache", "embeddings")

    @property
    def render_cache(self) -> Path:
        return self._dir("cache", "iiif-renders")

    @property
    def indexes(self) -> Path:
        return self._dir("indexes")

    @property
    def local_iiif(self) -> Path:
        return self._dir("local-iiif")

    @property
    def models(self) -> Path:
        return self._dir("models")

    @property
    def reports(self) -> Path:
        return self._dir("reports")

    def ensure(self) -> DataDir:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    def _dir(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path
