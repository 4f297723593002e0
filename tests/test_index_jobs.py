"""The checks `iconosearch index` makes, as library calls (iconosearch.index.jobs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iconosearch.config import CollectionConfig, Settings
from iconosearch.index.jobs import IndexRequestError, build_options, check_collections


def test_build_options_refuse_an_unknown_kind_and_convert_the_memory_budget() -> None:
    with pytest.raises(IndexRequestError, match="unknown --kind 'ivf-magic'; choose one of flat, ivf-flat"):
        build_options("ivf-magic")
    options = build_options("hnsw", shards=2, memory_gb=0.5)
    assert (options.kind, options.shards, options.memory_budget) == ("hnsw", 2, 512 * 1024**2)


def test_collections_must_be_configured_or_harvested(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        collections={"maps": CollectionConfig(kind="manifest", url="https://example.org/m.json")},
    )
    check_collections(settings, ["maps"])
    unknown = r"unknown collection\(s\): prints \(configured or harvested: maps\)"
    with pytest.raises(IndexRequestError, match=unknown):
        check_collections(settings, ["maps", "prints"])
