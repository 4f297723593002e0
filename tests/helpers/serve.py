"""``iconosearch serve`` as a real subprocess on a free port, for tests that watch the server process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.helpers.demo_index import free_port


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[str]
    log: Path

    def status(self, key: str) -> int:
        """A ``/proc/<pid>/status`` value in kB (``VmRSS``, ``VmHWM`` = peak RSS)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)


@contextlib.contextmanager
def serve(data_dir: Path, work: Path, *, config: str = "", timeout_s: float = 120) -> Iterator[Served]:
    """Run the server on ``data_dir`` until it is ready (``/readyz`` 200), stop it afterwards."""
    port = free_port()
    cfg = work / "serve.toml"
    cfg.write_text(config)
    log = work / "serve.log"
    env = {**os.environ, "ICONOSEARCH_DATA_DIR": str(data_dir), "ICONOSEARCH_CONFIG": str(cfg)}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "iconosearch"), "--verbose", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        last = ""
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"server not ready ({last}):\n" + log.read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(f"{url}/readyz", timeout=2)
                if r.status_code == 200:
                    break
                last = r.text
            time.sleep(0.2)
        yield Served(url, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
