"""`iconosearch models`: list model specs; `iconosearch models build-lite`: rebuild the embedded default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from iconosearch.commands._common import emit_json, err_console, fail, out_console, state


def register(app: typer.Typer) -> None:
    models_app = typer.Typer(
        help="List available models (spec, dim, preprocessing, license, offline) and build the default.",
        invoke_without_command=True,
        no_args_is_help=False,
    )
    app.add_typer(models_app, name="models")

    @models_app.callback()
    def models(ctx: typer.Context) -> None:
        """List model specs usable in config, CLI and API; `build-lite` rebuilds iconosearch-lite."""
        if ctx.invoked_subcommand is not None:
            return
        from iconosearch.models.available import available_models

        rows = available_models()
        if state(ctx).json_output:
            emit_json(rows)
            return
        from rich.table import Table

        table = Table(title="Models (spec strings for 'model' in the config or --model)")
        # Specs are copied into configs and commands: never wrapped or cut (the description folds instead).
        table.add_column("spec", no_wrap=True, min_width=max((len(r["spec"]) for r in rows), default=4))
        for column in ("dim", "preprocessing", "license", "offline", "description"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(
                row["spec"],
                str(row["dim"] or "?"),
                row["preprocessing"],
                row["license"],
                "yes" if row["offline"] else "no",
                row["description"],
            )
        out_console.print(table)
        out_console.print(
            "Other forms: 'ARCH/PRETRAINED' (any open_clip pair), 'hf-hub:ORG/REPO', 'local-dir:PATH', "
            "or the path of a fine-tuned checkpoint folder.",
            highlight=False,
        )

    @models_app.command("build-lite")
    def build_lite_command(
        ctx: typer.Context,
        heritage: Annotated[
            Path,
            typer.Option(
                help="Folder of heritage sets (wga-paintings/, usda-pomological/, stellarium-manuscripts/)."
            ),
        ],
        out: Annotated[
            Path,
            typer.Option("--out", "-o", help="Output folder (default: a new folder, not the shipped model)."),
        ] = Path("build/iconosearch-lite"),
        baseline: Annotated[
            Path, typer.Option(help="Lite checkpoint to warm-start from and compare with.")
        ] = Path("bench/baselines/iconosearch-lite-0.1"),
        demo_metadata: Annotated[
            Path | None,
            typer.Option(help="Demo collection metadata.csv: its watercolours stay out of training."),
        ] = Path("demo/collection/metadata.csv"),
        cache_dir: Annotated[
            Path | None,
            typer.Option(help="Corpus + feature cache (default: ~/.cache/iconosearch/corpus)."),
        ] = None,
        clipart_train: Annotated[int, typer.Option(min=2, help="Clip-art training pairs (subsample).")] = 200,
        text_tower: Annotated[
            str, typer.Option(help="Text-tower kind: minilm (built in) or a registered one, e.g. use-m3.")
        ] = "minilm",
        image_tower: Annotated[
            str,
            typer.Option(
                help="Image-tower kind: lite0 (default), lite1 or lite2 (the lite-towers extra), embedded "
                "at the resolution it was trained at; docs/image-towers.md."
            ),
        ] = "lite0",
    ) -> None:
        """Rebuild iconosearch-lite: corpora, splits, features, heads, choice on validation, model card."""
        import torch

        from iconosearch.lite.build import BuildInputs, build_lite
        from iconosearch.lite.card import write_model_card
        from iconosearch.lite.corpus import CorpusError
        from iconosearch.models.specs import ModelUnavailableError

        st = state(ctx)
        torch.set_num_threads(max(1, min(4, torch.get_num_threads())))

        def log(message: str) -> None:
            if not st.quiet:
                err_console.print(message, highlight=False)

        from rich.progress import Progress

        inputs = BuildInputs(
            heritage,
            baseline,
            demo_metadata,
            cache_dir,
            clipart_train,
            text_tower=text_tower,
            image_tower=image_tower,
        )
        with Progress(disable=st.quiet, console=err_console, transient=True) as bar:
            task = bar.add_task("tower features", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            try:
                report = build_lite(out, inputs, log=log, progress=progress)
            except (CorpusError, ModelUnavailableError, FileNotFoundError) as exc:
                fail(str(exc))
        write_model_card(report)
        if st.json_output:
            emit_json({"out": str(report.out_dir), "metrics": report.metrics})
        else:
            cmp = report.metrics["vs_baseline_t2i_R@10"]["heritage, all query types"]
            out_console.print(
                f"wrote {report.out_dir} ({report.variant}, epoch {report.best_epoch}, bridge weight "
                f"{report.bridge_weight}); heritage test t2i R@10 vs 0.1: {100 * cmp['estimate']:+.1f} "
                f"points "
                f"[{100 * cmp['low']:+.1f}, {100 * cmp['high']:+.1f}]",
                highlight=False,
            )

    @models_app.command("calibrate")
    def calibrate_command(
        ctx: typer.Context,
        folder: Annotated[
            Path, typer.Argument(help="Evaluation data: a folder of images with metadata.csv (titles).")
        ],
        model: Annotated[
            str | None, typer.Option("--model", "-m", help="Model spec (default: the configured model).")
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option(
                "--out",
                "-o",
                help="Where to write it (default: the model's folder, else the data directory).",
            ),
        ] = None,
        limit: Annotated[int | None, typer.Option(min=20, help="Use only the first N items.")] = None,
    ) -> None:
        """Measure a model's relevance bands (strong / possible / weak match) on evaluation data."""
        from iconosearch.evaluation.calibration import calibrate_folder

        st = state(ctx)
        settings = st.settings()
        try:
            target, cal = calibrate_folder(
                model or settings.model, folder, data_dir=settings.data_dir, out=out, limit=limit
            )
        except ValueError as exc:
            fail(str(exc))
        if st.json_output:
            emit_json({"out": str(target), **cal.to_dict()})
        else:
            out_console.print(
                f"wrote {target}: text strong ≥ {cal.text.strong:.3f}, possible ≥ {cal.text.possible:.3f}; "
                f"image strong ≥ {cal.image.strong:.3f}, possible ≥ {cal.image.possible:.3f}",
                highlight=False,
            )
