"""`iconosearch harvest`: IIIF collections, manifests, change streams and local folders → records + images."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress, TaskID

from iconosearch.commands._common import (
    PlainProgress,
    emit_json,
    err_console,
    fail,
    out_console,
    plain_progress_wanted,
    progress_bars,
    state,
)
from iconosearch.harvest.summary import EXIT_FAILED, EXIT_PARTIAL

if TYPE_CHECKING:
    from iconosearch.harvest.run import ProgressCallback, Stage
    from iconosearch.harvest.summary import HarvestSummary

SHOWN_FAILURES = 5


def _print_summary(s: HarvestSummary) -> None:
    from rich.table import Table

    table = Table(title=f"harvest of {s.collection}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("source", f"{s.source} ({s.kind})")
    table.add_row("documents", f"{s.documents_fetched} fetched, {s.documents_unchanged} unchanged")
    table.add_row("manifests", str(s.manifests))
    table.add_row("records", f"{s.records} live ({s.records_new} new, {s.records_deleted} deleted)")
    table.add_row(
        "images",
        f"{s.images_fetched} fetched, {s.images_reused} reused, {s.images_failed} failed; "
        f"{s.images_cached} cached in all",
    )
    if s.skipped:
        table.add_row("skipped", ", ".join(f"{k}: {v}" for k, v in sorted(s.skipped.items())))
    if s.failed:
        table.add_row("failed", ", ".join(f"{k}: {v}" for k, v in sorted(s.failed.items())))
    walk = "whole source seen" if s.complete else "partial walk (failures or --limit); rerun to resume"
    outcome = {
        "ok": "ok",
        "partial": f"PARTIAL FAILURE (exit {EXIT_PARTIAL})",
        "failed": f"FAILED: nothing usable harvested (exit {EXIT_FAILED})",
    }[s.outcome]
    table.add_row("outcome", f"{outcome}; {walk}")
    table.add_row("time", f"{s.duration_s:.1f} s, {s.requests} HTTP requests")
    out_console.print(table)
    for f in s.failures[:SHOWN_FAILURES]:
        err_console.print(
            f"  [yellow]{f['stage']}[/] {f['ref']}: {f['reason']}: {f['detail']}",
            highlight=False,
            soft_wrap=True,
        )
    if len(s.failures) > SHOWN_FAILURES:
        more = len(s.failures) - SHOWN_FAILURES
        err_console.print(f"  … and {more} more (all of them in --json and in state.sqlite)", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("harvest")
    def harvest(
        ctx: typer.Context,
        targets: Annotated[
            list[str] | None,
            typer.Argument(help="Configured collection names or IIIF URLs (default: every configured one)."),
        ] = None,
        limit: Annotated[
            int | None, typer.Option("--limit", min=1, help="Stop after this many manifests.")
        ] = None,
        since: Annotated[
            str | None,
            typer.Option(
                "--since",
                help="Change streams: changes after this time (ISO, or an age like 7d; "
                "default: the last crawl).",
            ),
        ] = None,
    ) -> None:
        """Harvest a configured collection (or a IIIF URL) into image records and cached images.

        Exit status: 0 when every record and image was harvested or skipped for a stated reason; 4 when
        some failed (partial failure); 5 when nothing usable came back (total failure); 1 when a harvest
        could not start.
        """
        from iconosearch.harvest.harvester import harvest_collections, parse_since

        st = state(ctx)
        settings = st.settings()
        names = list(targets or settings.collections)
        if not names:
            fail("no collection given and none configured (add [collections.<name>] to the config)", code=2)
        try:
            since_dt = parse_since(since) if since else None
        except ValueError as exc:
            fail(str(exc), code=2)
        progress = progress_bars(quiet=st.quiet or st.json_output, transient=True)
        with progress:
            bars = _progress_for(progress, quiet=st.quiet)
            batch = harvest_collections(settings, names, limit=limit, since=since_dt, progress_for=bars)
        if st.json_output:
            emit_json({"harvests": [s.as_dict() for s in batch.summaries], "errors": batch.errors})
        elif not st.quiet:
            for s in batch.summaries:
                _print_summary(s)
        for e in batch.errors:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        if not st.json_output and not st.quiet:
            _print_next(st.config_file, batch.summaries)
        raise typer.Exit(batch.exit_code)


def _progress_for(progress: Progress, *, quiet: bool) -> Callable[[str], ProgressCallback]:
    """Per collection, a bar per stage (replacing the previous collection's), or plain lines without a
    terminal."""
    shown: list[TaskID] = []

    def start(name: str) -> ProgressCallback:
        for task in shown:
            progress.remove_task(task)
        tasks = {
            stage: progress.add_task(f"{name}: {stage}", total=None) for stage in ("documents", "images")
        }
        shown[:] = tasks.values()
        plain = PlainProgress(name) if plain_progress_wanted(quiet=quiet) else None

        def report(stage: Stage, done: int, total: int | None) -> None:
            if plain is not None:
                plain(stage, done, total)
            progress.update(tasks[stage], completed=done, total=total)

        return report

    return start


def _print_next(config_file: Path | None, summaries: list[HarvestSummary]) -> None:
    """The exact command that indexes what was just harvested (by the collection's name)."""
    names = [s.collection for s in summaries if s.records]
    if not names:
        return
    config = f" -c {shlex.quote(str(config_file))}" if config_file is not None else ""
    out_console.print(f"next: iconosearch{config} index {' '.join(names)}", highlight=False, soft_wrap=True)
