"""Memory per request is bounded: several 16-bit PNG uploads at once, against the real server process.

0.1 decoded a 7990×7990 16-bit greyscale PNG (124 KB on the wire, under the pixel cap) through two
``int64`` copies: about 1.3 GB per upload, 7.5 GB for six at once, and every other search timed out.
The documented bound (README, "Memory"): the server's peak RSS grows by at most
``image_decode_concurrency`` × (the decoded image + a few MB); for this image and the default of 2,
well under :data:`GROWTH_BOUND_KB`, which a single upload on 0.1 exceeded by itself.
"""

from __future__ import annotations

import concurrent.futures
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers.demo_index import DemoIndex, shared_demo_index
from tests.helpers.serve import serve

UPLOADS = 6
GROWTH_BOUND_KB = 600 * 1024
"""2 decodes × 128 MB (the decoded 16-bit image) + image-tower activations, with room to spare."""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoIndex:
    return shared_demo_index(tmp_path_factory)


@pytest.fixture(scope="module")
def png16() -> bytes:
    """The probe's image: 7990×7990 16-bit greyscale, mostly flat, so it compresses to ~120 KB."""
    arr = np.zeros((7990, 7990), dtype=np.uint16)
    arr[::7, :] = 40000
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def _small_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 30, 200)).save(buf, "PNG")
    return buf.getvalue()


def test_concurrent_16bit_png_uploads_stay_under_the_memory_bound(
    demo: DemoIndex, png16: bytes, tmp_path: Path
) -> None:
    assert len(png16) < 1024 * 1024
    with serve(demo.data_dir, tmp_path, timeout_s=400) as srv:  # a cold model load is slow on busy CPUs
        # Warm up both towers, so that the baseline includes the loaded model.
        files = {"file": ("warm.png", _small_png(), "image/png")}
        assert httpx.post(f"{srv.url}/api/search/image", files=files, timeout=120).status_code == 200
        base_kb = srv.status("VmHWM")

        def upload(i: int) -> httpx.Response:
            files = {"file": (f"big{i}.png", png16, "image/png")}
            return httpx.post(f"{srv.url}/api/search/image", files=files, timeout=120)

        with concurrent.futures.ThreadPoolExecutor(UPLOADS + 1) as pool:
            uploads = [pool.submit(upload, i) for i in range(UPLOADS)]
            search = pool.submit(httpx.get, f"{srv.url}/api/search", params={"q": "a ship"}, timeout=60)
            answers = [f.result() for f in uploads]
            ordinary = search.result()
        peak_kb = srv.status("VmHWM")
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {200, 503}, [r.text for r in answers]
    assert 200 in statuses
    for r in answers:
        if r.status_code == 503:
            assert r.json()["code"] == "busy" and int(r.headers["retry-after"]) > 0
    assert ordinary.status_code == 200 and ordinary.json()["results"]
    growth = peak_kb - base_kb
    assert growth < GROWTH_BOUND_KB, f"peak RSS grew by {growth // 1024} MB (base {base_kb // 1024} MB)"
