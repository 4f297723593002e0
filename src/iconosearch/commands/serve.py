"""`iconosearch serve`."""

from __future__ import annotations

import typer

from iconosearch.commands._common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve() -> None:
        """Serve the search API and web UI."""
        not_implemented("serve")
