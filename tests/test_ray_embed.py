"""The Ray Data embedding path on a real local Ray cluster (``ray.init(num_cpus=2)``)."""

from __future__ import annotations

import hashlib
import os
import signal
from functools import partial
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'iconosearch[ray]')")

from iconosearch.models.embedder import load_embedder  # noqa: E402
from iconosearch.models.pipeline import EmbeddingCache, embed_images  # noqa: E402
from iconosearch.models.ray_embed import RayEmbedOptions, ray_embed_images  # noqa: E402
from tests.helpers.slow_embedder import SlowHashEmbedder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster() -> object:
    # Workers import the test helpers (the slow embedder) from the repository, like the driver.
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}},
    )
    yield ray
    ray.shutdown()


def _items(n: int) -> list[tuple[str, Path]]:
    paths = sorted((ROOT / "demo" / "collection").rglob("*.jpg"))[:n]
    return [(hashlib.sha256(p.read_bytes()).hexdigest(), p) for p in paths]


def test_ray_vectors_equal_single_process_and_share_its_cache(cluster: object, tmp_path: Path) -> None:
    items = _items(20)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    items.append(("f" * 64, broken))
    embedder = load_embedder("iconosearch-lite")
    single = embed_images(embedder, items, cache_dir=None)
    cache_dir = tmp_path / "cache"
    seen: list[tuple[int, int]] = []
    distributed = ray_embed_images(
        partial(load_embedder, "iconosearch-lite"),
        items,
        fingerprint=embedder.fingerprint,
        dim=embedder.dim,
        cache_dir=cache_dir,
        options=RayEmbedOptions(batch_size=8),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert distributed.hashes == single.hashes and len(distributed) == 20
    np.testing.assert_allclose(distributed.vectors, single.vectors, rtol=0, atol=1e-4)
    assert distributed.failures.keys() == single.failures.keys() == {"f" * 64}
    assert distributed.failures["f" * 64].split(":")[0] == single.failures["f" * 64].split(":")[0]
    assert seen[-1] == (21, 21)
    # The single-process path now finds every vector in the cache the Ray path filled.
    again = embed_images(embedder, items[:20], cache_dir=cache_dir)
    assert again.cached == 20
    np.testing.assert_array_equal(again.vectors, distributed.vectors)


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _model_actor_pids() -> list[int]:
    """Model actor processes of *this* test's cluster (descendants of this process: ray.init started it)."""
    me = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            if "_EmbedActor" not in cmdline or "MapWorker" not in cmdline:
                continue
            pid = int(entry.name)
            while pid > 1 and pid != me:
                pid = _parent(pid)
        except (OSError, ValueError):
            continue
        if pid == me:
            pids.append(int(entry.name))
    return pids


def test_a_killed_model_worker_is_retried_and_nothing_is_lost_or_duplicated(
    cluster: object, tmp_path: Path
) -> None:
    items = _items(48)
    items += items[:5]  # duplicates in the input are embedded once, as in the single-process path
    killed: list[int] = []

    def kill_once(done: int, total: int) -> None:
        if done and not killed:
            pids = _model_actor_pids()
            assert pids, "no model actor process found to kill"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    reference = SlowHashEmbedder()
    result = ray_embed_images(
        SlowHashEmbedder,
        items,
        fingerprint=reference.fingerprint,
        dim=reference.dim,
        cache_dir=tmp_path / "cache",
        options=RayEmbedOptions(batch_size=4),
        progress=kill_once,
    )
    assert killed, "the run finished before a worker could be killed"
    assert len(result.hashes) == len(set(result.hashes)) == 48 and not result.failures
    assert list(result.hashes) == list(dict.fromkeys(h for h, _ in items))
    expected = embed_images(reference, items, cache_dir=None)
    np.testing.assert_allclose(result.vectors, expected.vectors, rtol=0, atol=1e-6)
    cache = EmbeddingCache(tmp_path / "cache", reference.fingerprint, reference.dim)
    try:
        assert len(cache) == 48
    finally:
        cache.close()


def test_index_built_through_ray_equals_the_single_process_build(cluster: object, tmp_path: Path) -> None:
    from iconosearch.config import RayConfig
    from iconosearch.index.builder import build_index
    from tests.test_index_builder import _harvest, _records, _settings

    embedder = load_embedder("iconosearch-lite")
    versions = []
    for name, ray_address in (("plain", None), ("ray", "local")):
        data_dir = tmp_path / name
        _harvest(data_dir, "maps", _records(0, 12))
        settings = _settings(data_dir).model_copy(
            update={"ray": RayConfig(address=ray_address, batch_size=4)}
        )
        versions.append(build_index(settings, "default", [], embedder))
    plain, distributed = versions
    assert distributed.manifest.count == plain.manifest.count == 12
    np.testing.assert_array_equal(np.load(distributed.ids_path), np.load(plain.ids_path))
    np.testing.assert_allclose(np.load(distributed.vectors_path), np.load(plain.vectors_path), atol=1e-4)
