"""`iconosearch bench`."""

from __future__ import annotations

import typer

from iconosearch.commands._common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench() -> None:
        """Compare models on held-out image–caption pairs."""
        not_implemented("bench")
