"""What every command shares: the loaded settings, the console, output modes and clean failures."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from iconosearch.config import ConfigError, Settings, load_settings


@dataclass
class CliState:
    config_file: Path | None = None
    quiet: bool = False
    json_output: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_file)
            except ConfigError as exc:
                fail(str(exc), code=2)
        return self._settings


err_console = Console(stderr=True)
out_console = Console()


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = CliState()
        ctx.find_root().obj = obj
    return obj


def fail(message: str, code: int = 1) -> NoReturn:
    # soft_wrap: error messages carry paths and keys that must stay greppable on one line.
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def not_implemented(job: str) -> NoReturn:
    fail(f"'{job}' is not implemented yet", code=3)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def progress_bars(*, quiet: bool, transient: bool = False) -> Progress:
    """The progress display every long job uses: one bar per stage, on stderr, off with ``--quiet``."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
        transient=transient,
    )


def stage_updater(bars: Progress) -> Callable[[str, int, int | None], None]:
    """A ``progress(stage, done, total)`` callback that keeps one bar per stage name."""
    tasks: dict[str, TaskID] = {}

    def update(stage: str, done: int, total: int | None) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done, total=total)

    return update
