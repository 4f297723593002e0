"""`iconosearch demo`."""

from __future__ import annotations

import typer

from iconosearch.commands._common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo() -> None:
        """Build, harvest, index and serve the bundled demo collection."""
        not_implemented("demo")
