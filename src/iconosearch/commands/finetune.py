"""`iconosearch finetune`."""

from __future__ import annotations

import typer

from iconosearch.commands._common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("finetune")
    def finetune() -> None:
        """Fine-tune a model on a harvested collection's image–caption pairs."""
        not_implemented("finetune")
