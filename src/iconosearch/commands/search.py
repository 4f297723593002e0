"""`iconosearch search`."""

from __future__ import annotations

import typer

from iconosearch.commands._common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("search")
    def search() -> None:
        """Search an index from the command line."""
        not_implemented("search")
