"""`iconosearch demo`: the whole main job on the bundled demo collection."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from iconosearch.commands._common import (
    emit_json,
    err_console,
    fail,
    out_console,
    progress_bars,
    stage_updater,
    state,
)


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        ctx: typer.Context,
        port: Annotated[
            int | None, typer.Option(help="Port (default: server.port, 8000).", min=1, max=65535)
        ] = None,
        collection: Annotated[
            Path | None, typer.Option(help="Demo collection folder (default: demo/collection).")
        ] = None,
        no_serve: Annotated[
            bool, typer.Option("--no-serve", help="Stop after indexing and the example queries.")
        ] = False,
    ) -> None:
        """Build, harvest, index and serve the bundled demo collection on 127.0.0.1."""
        from iconosearch.demo_job import DemoError, run_demo
        from iconosearch.harvest.sources import HarvestError
        from iconosearch.index.store import IndexStoreError
        from iconosearch.models.specs import ModelUnavailableError

        cli = state(ctx)
        settings = cli.settings()
        started = time.perf_counter()

        def say(msg: str) -> None:
            if not cli.quiet:
                err_console.print(f"[bold]demo:[/] {msg}", highlight=False)

        try:
            with progress_bars(quiet=cli.quiet, transient=True) as bars:
                run = run_demo(
                    settings, collection_dir=collection, port=port, step=say, progress=stage_updater(bars)
                )
        except (DemoError, HarvestError, IndexStoreError, ModelUnavailableError, OSError) as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", code=130)
        run.timings["total_s"] = time.perf_counter() - started

        if cli.json_output:
            emit_json(
                {
                    "url": run.url,
                    "indexed": run.indexed,
                    "index_version": run.index_version,
                    "timings": run.timings,
                    "harvest": run.harvest,
                    "examples": [{"query": e.query, "top5": e.titles} for e in run.examples],
                }
            )
        else:
            out_console.print(
                f"\n[bold green]iconosearch demo: {run.indexed} images indexed "
                f"in {run.timings['total_s']:.1f} s[/]",
                highlight=False,
            )
            out_console.print("Try these (top results shown):", highlight=False)
            for ex in run.examples:
                link = f"{run.url}/?q={ex.query.replace(' ', '+')}"
                out_console.print(f"  [bold]{ex.query}[/]  {link}", highlight=False)
                for title in ex.titles[:3]:
                    out_console.print(f"      · {title}", highlight=False, markup=False)
            first = run.examples[0].query.replace(" ", "+") if run.examples else "a+painting"
            out_console.print(f"  curl '{run.url}/api/search?q={first}&k=5'", highlight=False, markup=False)
        if no_serve:
            run.server.stop()
            return
        out_console.print(
            f"\n[bold]serving on {run.url}/[/]  (API docs: {run.url}/docs) — Ctrl-C stops", highlight=False
        )
        # A service manager's SIGTERM stops the demo as cleanly as Ctrl-C does.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            run.server.wait()
        except KeyboardInterrupt:
            pass
        finally:
            run.server.stop()
            out_console.print("stopped", highlight=False)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
