"""`iconosearch models`."""

from __future__ import annotations

import typer

from iconosearch.commands._common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("models")
    def models() -> None:
        """List available models and build the embedded default."""
        not_implemented("models")
