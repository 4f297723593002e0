"""What every command shares: the loaded settings, the console, output modes and clean failures."""

from __future__ import annotations

import json
import sys
import time
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


PLAIN_PROGRESS_INTERVAL_S = 10.0
"""How often a long job without a terminal logs a progress line."""


class PlainProgress:
    """Progress as periodic plain lines on stderr, where there is no terminal to draw bars on.

    Under cron, in a container or piped into a file, bars are not drawn at all; without these lines a
    long harvest prints nothing and looks hung. One line per stage at most every ``interval_s``, plus
    one when a stage with a known total finishes.
    """

    def __init__(self, label: str = "", *, interval_s: float = PLAIN_PROGRESS_INTERVAL_S) -> None:
        self.label = f"{label}: " if label else ""
        self.interval_s = interval_s
        self._last: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last.get(stage, -self.interval_s) < self.interval_s:
            return
        self._last[stage] = now
        of = f"/{total}" if total is not None else ""
        sys.stderr.write(f"{self.label}{stage} {done}{of}\n")
        sys.stderr.flush()


def plain_progress_wanted(*, quiet: bool) -> bool:
    """Whether progress should be logged as plain lines: not quiet, and stderr is no terminal."""
    return not quiet and not err_console.is_terminal


def stage_updater(bars: Progress) -> Callable[[str, int, int | None], None]:
    """A ``progress(stage, done, total)`` callback: one bar per stage, or plain lines without a terminal."""
    tasks: dict[str, TaskID] = {}
    plain = PlainProgress() if plain_progress_wanted(quiet=bars.disable) else None

    def update(stage: str, done: int, total: int | None) -> None:
        if plain is not None:
            plain(stage, done, total)
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done, total=total)

    return update
