"""`iconosearch evaluate`: compare model specs on the same held-out image–caption pairs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from iconosearch.commands._common import emit_json, err_console, fail, out_console, progress_bars, state

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.progress import Progress, TaskID


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        ctx: typer.Context,
        models: Annotated[list[str], typer.Argument(help="Model specs to compare (the first is the base).")],
        collection: Annotated[
            list[str] | None,
            typer.Option("--collection", help="Harvested collection(s) to evaluate on (repeatable)."),
        ] = None,
        pairs_file: Annotated[
            Path | None, typer.Option("--pairs", help="Pairs from a JSON-lines file.")
        ] = None,
        split_file: Annotated[
            Path | None,
            typer.Option("--split", help="split.json of a fine-tuned model: evaluate on its --part only."),
        ] = None,
        part: Annotated[
            str, typer.Option(help="Part of --split to evaluate on: test, val or heldout.")
        ] = "test",
        base: Annotated[str | None, typer.Option(help="Reference model (default: the first spec).")] = None,
        output: Annotated[
            Path | None,
            typer.Option("--output", "-o", help="Report folder (default: <data_dir>/reports/evaluate-…)."),
        ] = None,
        resamples: Annotated[int, typer.Option(help="Paired bootstrap resamples.")] = 1000,
        confidence: Annotated[float, typer.Option(help="Confidence level of the intervals.")] = 0.95,
        seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
        batch_size: Annotated[int, typer.Option(help="Images per model batch.")] = 32,
        latency_queries: Annotated[
            int, typer.Option(help="Single queries timed for the latency figure.")
        ] = 20,
        threads: Annotated[
            int | None,
            typer.Option(help="CPU threads for torch (default: torch's; 1 is faster on busy cores)."),
        ] = None,
        device: Annotated[
            str | None, typer.Option(help="cpu or cuda (default: cuda when available).")
        ] = None,
    ) -> None:
        """Text→image and image→text R@1/5/10, median rank and MRR for each model, paired bootstrap CIs of
        each model's difference from the base, speed, and a one-line verdict; JSON + Markdown + PNG charts."""
        from iconosearch.evaluation.jobs import (
            ComparisonSettings,
            JobError,
            compare_models,
            evaluation_pairs,
        )
        from iconosearch.evaluation.report import result_as_dict, write_report
        from iconosearch.models.specs import ModelSpecError, ModelUnavailableError

        st = state(ctx)
        settings = st.settings()
        specs = list(dict.fromkeys(models))
        base_spec = base or specs[0]
        if base_spec not in specs:
            specs.insert(0, base_spec)
        max_pixels = settings.limits.image_max_pixels
        try:
            chosen = evaluation_pairs(
                settings.data_dir,
                collections=collection or [],
                pairs_file=pairs_file,
                split_file=split_file,
                part=part,
                max_pixels=max_pixels,
            )
        except JobError as exc:
            fail(str(exc), code=2)
        for why, n in sorted(chosen.excluded.items()):
            err_console.print(f"[yellow]excluded[/] {n} records: {why}", highlight=False)
        how = ComparisonSettings(
            base=base_spec,
            resamples=resamples,
            confidence=confidence,
            seed=seed,
            batch_size=batch_size,
            latency_queries=latency_queries,
            max_pixels=max_pixels,
            threads=threads,
            device=device,
        )
        try:
            with progress_bars(quiet=st.quiet or st.json_output) as bar:
                result = compare_models(specs, chosen, how, progress=_updater(bar))
        except (ModelSpecError, ModelUnavailableError) as exc:
            fail(str(exc), code=2)
        folder = output or settings.data_dir / "reports" / f"evaluate-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
        files = write_report(result, folder)
        if st.json_output:
            emit_json({"report_dir": str(folder), "files": [str(f) for f in files], **result_as_dict(result)})
            return
        for m in result.models:
            out_console.print(m.verdict, highlight=False)
        for warning in result.warnings:
            err_console.print(f"[yellow]warning[/] {warning}", highlight=False)
        out_console.print(f"report: [bold]{folder / 'REPORT.md'}[/]")


def _updater(bar: Progress) -> Callable[[str, int, int], None]:
    """One progress bar per stage label, created on the stage's first report."""
    tasks: dict[str, TaskID] = {}

    def update(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=total)
        bar.update(tasks[label], completed=done, total=total)

    return update
