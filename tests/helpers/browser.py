"""Real browser and real server for the UI tests: Debian's Chromium via Playwright, uvicorn on 127.0.0.1."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from iconosearch.api.server import BackgroundServer

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).is_file():
            return candidate
    found = shutil.which("chromium")
    if found:
        return found
    pytest.skip("Debian's chromium is not installed (make browser)")


@contextmanager
def live_server(app: Any, port: int) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1:``port`` in a thread; yields the base URL."""
    server = BackgroundServer(app, "127.0.0.1", port).start()
    # The model's warm-up starts with the server; while it imports, a loaded machine can keep the
    # event loop waiting for the GIL for seconds, so wait for readiness rather than one quick answer.
    deadline = time.monotonic() + 300
    while True:
        try:
            ready = httpx.get(f"{server.url}/readyz", timeout=10)
            if ready.status_code == 200 or ready.json().get("status") == "not-ready":
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.2)
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def chromium(user_data_dir: Path, **context_options: Any) -> Iterator[Any]:
    """A headless Chromium context with a fresh profile; never downloads a browser."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=context_options.pop("viewport", {"width": 1280, "height": 900}),
            **context_options,
        )
        try:
            yield context
        finally:
            context.close()


@contextmanager
def checked_page(context: Any) -> Iterator[Any]:
    """A new page of ``context`` that fails the test on any uncaught JavaScript error."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    page.close()
    assert not errors, f"JavaScript errors: {errors}"


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")


def axe_violations(page: Any, impacts: tuple[str, ...] = SERIOUS) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.x A/AA violations of the page as it is now, of the given impacts.

    The page's context must bypass CSP (``bypass_csp=True``): axe is injected as a script of its own.
    """
    if not AXE.is_file():
        pytest.skip("axe-core is not installed (make web)")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """() => axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa']}})"""
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in impacts
    ]
