"""`iconosearch index`."""

from __future__ import annotations

import typer

from iconosearch.commands._common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("index")
    def index() -> None:
        """Embed harvested images and build a new index version, switched in atomically."""
        not_implemented("index")
