"""`iconosearch harvest`."""

from __future__ import annotations

import typer

from iconosearch.commands._common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("harvest")
    def harvest() -> None:
        """Harvest a configured collection (or a IIIF URL) into image records and cached images."""
        not_implemented("harvest")
