"""The ``iconosearch`` command: one sub-command per job."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from iconosearch import __version__
from iconosearch.commands import (
    config,
    demo,
    evaluate,
    finetune,
    harvest,
    index,
    item,
    models,
    search,
    serve,
    subjects,
)
from iconosearch.commands._common import CliState, err_console
from iconosearch.logs import setup_logging
from iconosearch.storage import StorageError, describe, is_storage_error

app = typer.Typer(
    name="iconosearch",
    help="Image–text search for heritage collections published through IIIF.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"iconosearch {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Config file (default: $ICONOSEARCH_CONFIG, ./iconosearch.toml)."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors; no progress bars.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
    log_json: Annotated[bool, typer.Option("--log-json", help="Log as JSON lines on stderr.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    setup_logging(json_lines=log_json, level=level)
    ctx.obj = CliState(config_file=config_file, quiet=quiet, json_output=json_output)


for _module in (harvest, index, serve, search, item, demo, finetune, evaluate, models, subjects, config):
    _module.register(app)


def main() -> None:
    try:
        app()
    except StorageError as exc:  # disk full and the like: one line, never a traceback
        fail_quietly(str(exc))
    except OSError as exc:
        if not is_storage_error(exc):
            raise
        fail_quietly(describe(exc, f"iconosearch {' '.join(sys.argv[1:2])}".strip(), Path.cwd()))


def fail_quietly(message: str) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise SystemExit(1)
