"""The HTTP API and web UI (FastAPI): ``create_app(settings)``."""

from __future__ import annotations

from iconosearch.api.app import create_app

__all__ = ["create_app"]
