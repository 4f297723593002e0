"""Serving the app from inside another program (the demo, tests): uvicorn in a thread, stopped cleanly."""

from __future__ import annotations

import threading
import time
from typing import Any


class BackgroundServer:
    """uvicorn serving an ASGI app in a thread, stopped cleanly by :meth:`stop`."""

    def __init__(self, app: Any, host: str, port: int, *, log_level: str = "warning") -> None:
        import uvicorn

        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"uvicorn-{port}", daemon=True)

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C ends it)."""
        while self._thread.is_alive():
            self._thread.join(timeout=0.5)
