"""`iconosearch evaluate`: compare model specs on the same held-out image–caption pairs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from iconosearch.commands._common import emit_json, err_console, fail, out_console, progress_bars, state

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

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
        from iconosearch.commands._common import harvested_collections
        from iconosearch.commands.finetune import load_pairs
        from iconosearch.evaluation.benchmark import (
            ModelEmbeddings,
            compare,
            decodable,
            embed_eval_set,
            eval_set,
        )
        from iconosearch.evaluation.pairs import PARTS, Pair, Split
        from iconosearch.evaluation.report import result_as_dict, write_report
        from iconosearch.models.embedder import load_embedder
        from iconosearch.models.specs import ModelSpecError, ModelUnavailableError

        st = state(ctx)
        settings = st.settings()
        specs = list(dict.fromkeys(models))
        base_spec = base or specs[0]
        if base_spec not in specs:
            specs.insert(0, base_spec)
        if part not in PARTS:
            fail(f"unknown --part {part!r}: choose one of {', '.join(PARTS)}", code=2)
        data_dir = settings.data_dir
        split = None
        if split_file is not None:
            try:
                split = Split.load(split_file)
            except (OSError, ValueError, KeyError) as exc:
                fail(f"cannot read split file {split_file}: {exc}", code=2)
        names, source_file = list(collection or []), pairs_file
        if split is not None and not names and source_file is None:
            # A split written by `finetune` names the collections and pairs file it was made from.
            names, source_file = list(split.collections), split.pairs_file
            if not names and source_file is None:
                fail(
                    f"{split_file} does not name its collections (written before 0.2): "
                    "give --collection NAME or --pairs FILE",
                    code=2,
                )
        pair_set = load_pairs(data_dir, names, source_file, known=harvested_collections(data_dir))
        pairs: Sequence[Pair] = pair_set.pairs
        split_name = "all pairs"
        if split is not None:
            pairs = split.select(pairs, part)
            split_name = f"{part} of {split_file}"
        if len(pairs) < 2:
            fail(
                f"{len(pairs)} evaluation pairs: need at least 2 (check the collections, --split and --part)",
                code=2,
            )
        pairs, rejected = decodable(pairs, settings.limits.image_max_pixels)
        for why, n in sorted({**pair_set.excluded, **rejected}.items()):
            err_console.print(f"[yellow]excluded[/] {n} records: {why}", highlight=False)
        if len(pairs) < 2:
            fail(f"{len(pairs)} decodable evaluation pairs: need at least 2", code=2)
        data = eval_set(pairs)
        import torch

        if threads:
            torch.set_num_threads(threads)
        notes = (f"{torch.get_num_threads()} torch CPU threads; device {device or 'default'}",)
        quiet = st.quiet or st.json_output
        try:
            embedders = {s: load_embedder(s, device=device) for s in specs}
        except (ModelSpecError, ModelUnavailableError) as exc:
            fail(str(exc), code=2)
        embeddings: dict[str, ModelEmbeddings] = {}
        with progress_bars(quiet=quiet) as bar:
            for s, emb in embedders.items():
                task = bar.add_task(f"embedding with {s}", total=len(data.pairs) + len(data.texts))
                embeddings[s] = embed_eval_set(
                    emb,
                    data,
                    batch_size=batch_size,
                    latency_queries=latency_queries,
                    max_pixels=settings.limits.image_max_pixels,
                    progress=_updater(bar, task),
                )
        result = compare(
            data,
            embeddings,
            base=base_spec,
            fingerprints={s: e.fingerprint for s, e in embedders.items()},
            n_resamples=resamples,
            confidence=confidence,
            seed=seed,
            split_name=split_name,
        )
        result = replace(result, notes=notes)
        folder = output or data_dir / "reports" / f"evaluate-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
        files = write_report(result, folder)
        if st.json_output:
            emit_json({"report_dir": str(folder), "files": [str(f) for f in files], **result_as_dict(result)})
            return
        for m in result.models:
            out_console.print(m.verdict, highlight=False)
        for warning in result.warnings:
            err_console.print(f"[yellow]warning[/] {warning}", highlight=False)
        out_console.print(f"report: [bold]{folder / 'REPORT.md'}[/]")


def _updater(bar: Progress, task: TaskID) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return update
