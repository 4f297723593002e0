"""`iconosearch harvest`: IIIF collections, manifests, change streams and local folders → records + images."""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

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

if TYPE_CHECKING:
    from iconosearch.harvest.summary import HarvestSummary

_AGO = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO date/datetime (UTC when no zone is given) or an age such as ``90m``, ``12h``, ``7d``."""
    value = text.strip()
    m = _AGO.match(value)
    if m:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"--since {text!r}: expected an ISO date/time or an age like 12h or 7d") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


EXIT_PARTIAL = 4
"""Exit code of a harvest in which some records or images failed."""
EXIT_FAILED = 5
"""Exit code of a harvest that failed as a whole: failures, and no usable record or image."""
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


def exit_code(summaries: list[HarvestSummary], errors: list[str]) -> int:
    """0 only when everything succeeded or was skipped for a stated reason; the worst case wins."""
    if errors:
        return 1
    outcomes = {s.outcome for s in summaries}
    if "failed" in outcomes:
        return EXIT_FAILED
    return EXIT_PARTIAL if "partial" in outcomes else 0


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
        import asyncio

        from rich.progress import TaskID

        from iconosearch.harvest.harvester import harvest as run
        from iconosearch.harvest.run import Stage
        from iconosearch.harvest.sources import HarvestError
        from iconosearch.storage import writing

        st = state(ctx)
        settings = st.settings()
        names = list(targets or settings.collections)
        if not names:
            fail("no collection given and none configured (add [collections.<name>] to the config)", code=2)
        try:
            since_dt = parse_since(since) if since else None
        except ValueError as exc:
            fail(str(exc), code=2)
        summaries: list[HarvestSummary] = []
        errors: list[str] = []
        progress = progress_bars(quiet=st.quiet or st.json_output, transient=True)
        with progress:
            for name in names:
                tasks = {
                    "documents": progress.add_task(f"{name}: documents", total=None),
                    "images": progress.add_task(f"{name}: images", total=None),
                }

                plain = PlainProgress(name) if plain_progress_wanted(quiet=st.quiet) else None

                def report(
                    stage: Stage,
                    done: int,
                    total: int | None,
                    tasks: dict[str, TaskID] = tasks,
                    plain: PlainProgress | None = plain,
                ) -> None:
                    if plain is not None:
                        plain(stage, done, total)
                    progress.update(tasks[stage], completed=done, total=total)

                try:
                    with writing(f"harvesting {name!r}", settings.data_dir):
                        summaries.append(
                            asyncio.run(run(settings, name, limit=limit, since=since_dt, progress=report))
                        )
                except HarvestError as exc:
                    errors.append(f"{name}: {exc}")
                for task in tasks.values():
                    progress.remove_task(task)
        if st.json_output:
            emit_json({"harvests": [s.as_dict() for s in summaries], "errors": errors})
        elif not st.quiet:
            for s in summaries:
                _print_summary(s)
        for e in errors:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        if not st.json_output and not st.quiet:
            _print_next(st.config_file, summaries)
        raise typer.Exit(exit_code(summaries, errors))


def _print_next(config_file: Path | None, summaries: list[HarvestSummary]) -> None:
    """The exact command that indexes what was just harvested (by the collection's name)."""
    names = [s.collection for s in summaries if s.records]
    if not names:
        return
    config = f" -c {shlex.quote(str(config_file))}" if config_file is not None else ""
    out_console.print(f"next: iconosearch{config} index {' '.join(names)}", highlight=False, soft_wrap=True)
