"""`iconosearch harvest`: IIIF collections, manifests, change streams and local folders → records + images."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from iconosearch.commands._common import emit_json, err_console, fail, out_console, progress_bars, state

if TYPE_CHECKING:
    from iconosearch.harvest.harvester import HarvestSummary

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


def _print_summary(s: HarvestSummary) -> None:
    from rich.table import Table

    table = Table(title=f"harvest of {s.collection}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
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
    table.add_row("complete", "yes" if s.complete else "no (failures or --limit; rerun to resume)")
    table.add_row("time", f"{s.duration_s:.1f} s, {s.requests} HTTP requests")
    out_console.print(table)
    for f in s.failures[:5]:
        err_console.print(
            f"  [yellow]{f['stage']}[/] {f['ref']}: {f['reason']}: {f['detail']}", highlight=False
        )


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
        """Harvest a configured collection (or a IIIF URL) into image records and cached images."""
        import asyncio

        from rich.progress import TaskID

        from iconosearch.harvest.harvester import HarvestError, Stage
        from iconosearch.harvest.harvester import harvest as run

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

                def report(
                    stage: Stage, done: int, total: int | None, tasks: dict[str, TaskID] = tasks
                ) -> None:
                    progress.update(tasks[stage], completed=done, total=total)

                try:
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
            err_console.print(f"[bold red]error:[/] {e}", highlight=False)
        if errors:
            raise typer.Exit(1)
