"""`iconosearch finetune`: adapt a model to a harvested collection's image–caption pairs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from iconosearch.commands._common import (
    emit_json,
    err_console,
    fail,
    out_console,
    progress_bars,
    state,
)

if TYPE_CHECKING:
    from iconosearch.training.finetune import FinetuneResult


def _summary(result: FinetuneResult) -> dict[str, Any]:
    from iconosearch.evaluation.report import result_as_dict

    return {
        "spec": result.spec,
        "output_dir": str(result.output_dir),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "counts": result.counts,
        "base_val_loss": result.base_val_loss,
        "val_loss": [h.val_loss for h in result.history],
        "val_mean_recall": [h.val_mean_recall for h in result.history],
        "base_val_mean_recall": result.base_val_mean_recall,
        "wall_s": result.wall_s,
        "train_s": result.train_s,
        "feature_s": result.feature_s,
        "examples_per_s": result.examples_per_s,
        "test": result_as_dict(result.test) if result.test else None,
    }


def register(app: typer.Typer) -> None:
    @app.command("finetune")
    def finetune(
        ctx: typer.Context,
        collections: Annotated[
            list[str] | None,
            typer.Argument(help="Harvested collections whose image–caption pairs to train on."),
        ] = None,
        model: Annotated[
            str | None, typer.Option("--model", "-m", help="Base model spec (default: config).")
        ] = None,
        mode: Annotated[
            str, typer.Option(help="heads | lit (image tower locked) | text-locked | full.")
        ] = "heads",
        unlocked_layers: Annotated[
            int,
            typer.Option(
                help="text-locked mode: the text tower's last N layers stay trainable. open_clip's own text "
                "towers (ViT-B-32, ViT-B-16, ...) count the projection as a layer: 1 = projection only, "
                "2 = projection + last block. Hugging Face towers (xlm-roberta-...) and iconosearch-lite's "
                "MiniLM count transformer layers: 2 = the last two."
            ),
        ] = 2,
        output: Annotated[
            Path | None,
            typer.Option("--output", "-o", help="Model folder (default: <data_dir>/models/<name>)."),
        ] = None,
        name: Annotated[str | None, typer.Option(help="Model name under <data_dir>/models/.")] = None,
        pairs_file: Annotated[
            Path | None,
            typer.Option("--pairs", help="Pairs from a JSON-lines file (docs/finetune-walkthrough.md)."),
        ] = None,
        holdout: Annotated[
            list[str] | None, typer.Option(help="Collections kept out of training entirely (held-out test).")
        ] = None,
        split_file: Annotated[
            Path | None, typer.Option("--split", help="Reuse a saved split.json instead of making one.")
        ] = None,
        val_fraction: Annotated[float, typer.Option(help="Share of pairs for validation.")] = 0.1,
        test_fraction: Annotated[float, typer.Option(help="Share of pairs for the test split.")] = 0.1,
        min_eval_pairs: Annotated[int, typer.Option(help="Fewest pairs validation and test may have.")] = 10,
        epochs: Annotated[int, typer.Option(help="Most epochs (early stopping may end sooner).")] = 30,
        batch_size: Annotated[int, typer.Option(help="Pairs per batch.")] = 256,
        accumulation: Annotated[
            int, typer.Option(help="Batches per optimizer step (gradient accumulation).")
        ] = 1,
        lr: Annotated[float, typer.Option(help="Learning rate of heads and temperature.")] = 1e-3,
        tower_lr: Annotated[float, typer.Option(help="Learning rate of unlocked tower weights.")] = 1e-5,
        weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.05,
        warmup_epochs: Annotated[float, typer.Option(help="Linear warm-up, in epochs.")] = 1.0,
        patience: Annotated[
            int, typer.Option(help="Stop after N epochs without better validation recall.")
        ] = 6,
        seed: Annotated[int, typer.Option(help="Seed of the split, batches and dropout.")] = 0,
        precision: Annotated[
            str, typer.Option(help="auto | fp32 | bf16 | fp16 (mixed precision on GPU).")
        ] = "auto",
        device: Annotated[
            str | None, typer.Option(help="cpu or cuda (default: cuda when available).")
        ] = None,
        threads: Annotated[
            int | None, typer.Option(help="CPU threads (default: 1 for heads, torch's default otherwise).")
        ] = None,
        resume: Annotated[
            bool, typer.Option("--resume", help="Continue an interrupted run in --output.")
        ] = False,
        resamples: Annotated[int, typer.Option(help="Bootstrap resamples for the test comparison.")] = 1000,
    ) -> None:
        """Fine-tune a model on a harvested collection's image–caption pairs; writes a model usable as a spec.

        The pairs are split by manifest (pages of one book never straddle train and test); the split is saved
        as split.json beside the model. The result is compared with the base on the test split (paired
        bootstrap CIs) and documented in MODEL_CARD.md and DATASHEET.md.
        """
        from iconosearch.evaluation.jobs import JobError, load_pairs
        from iconosearch.models.hub import check_available
        from iconosearch.models.specs import ModelSpecError, ModelUnavailableError
        from iconosearch.training.finetune import MODES, FinetuneConfig, FinetuneError
        from iconosearch.training.jobs import SplitRequest, plan_finetune, run_finetune_job

        st = state(ctx)
        settings = st.settings()
        spec = model or settings.model
        if mode not in MODES:
            fail(f"unknown --mode {mode!r}: choose one of {', '.join(MODES)}", code=2)
        try:
            config = FinetuneConfig(
                mode=mode,
                unlocked_text_layers=unlocked_layers,
                epochs=epochs,
                batch_size=batch_size,
                accumulation_steps=accumulation,
                lr=lr,
                tower_lr=tower_lr,
                weight_decay=weight_decay,
                warmup_epochs=warmup_epochs,
                patience=patience,
                seed=seed,
                precision=precision,  # type: ignore[arg-type]
                max_pixels=settings.limits.image_max_pixels,
                threads=threads,
            )
            check_available(spec)
            pair_set = load_pairs(settings.data_dir, [*(collections or []), *(holdout or [])], pairs_file)
            for why, n in sorted(pair_set.excluded.items()):
                err_console.print(f"[yellow]excluded[/] {n} records: {why}", highlight=False)
            plan = plan_finetune(
                pair_set,
                settings.data_dir,
                collections=collections or [],
                holdout=holdout or [],
                pairs_file=pairs_file,
                split_file=split_file,
                how=SplitRequest(val_fraction, test_fraction, seed, min_eval_pairs),
                mode=mode,
                name=name,
                output=output,
            )
        except (ValueError, ModelSpecError, ModelUnavailableError) as exc:  # JobError is a ValueError
            fail(str(exc), code=2)
        if not st.quiet and not st.json_output:
            err_console.print(
                f"fine-tuning [bold]{spec}[/] ({mode}) on {len(plan.train)} pairs; "
                f"validation {len(plan.val)}, test {len(plan.test)} (split by manifest) → {plan.out_dir}",
                highlight=False,
            )
        try:
            result = _with_progress(
                st.quiet or st.json_output,
                lambda progress, on_epoch: run_finetune_job(
                    plan,
                    spec,
                    config,
                    feature_cache=settings.data_dir / "cache" / "features",
                    device=device,
                    resume=resume,
                    n_resamples=resamples,
                    progress=progress,
                    on_epoch=on_epoch,
                ),
            )
        except (FinetuneError, ModelSpecError, ModelUnavailableError, JobError) as exc:
            fail(str(exc), code=2)
        except KeyboardInterrupt:
            fail(
                f"interrupted; continue with the same command plus --resume --output {plan.out_dir}", code=130
            )
        if st.json_output:
            emit_json(_summary(result))
            return
        _present(result, resume=resume)


def _present(result: FinetuneResult, *, resume: bool) -> None:
    out_console.print(
        f"model written to [bold]{result.output_dir}[/]; use it as the model spec [bold]{result.spec}[/]"
    )
    if result.test is not None:
        for m in result.test.models:
            out_console.print(f"  {m.verdict}", highlight=False)
        for warning in result.test.warnings:
            err_console.print(f"  [yellow]warning[/] {warning}", highlight=False)
    if resume and result.resumed_from_epoch is None:
        out_console.print(f"  nothing to resume in {result.output_dir}: the run started from the beginning")
    if result.best_epoch == 0:
        out_console.print(
            f"  the base stayed best: no epoch beat its validation mean recall "
            f"({result.base_val_mean_recall:.1%}), so the saved model is the base, unchanged"
        )
    else:
        out_console.print(f"  best epoch {result.best_epoch} of {len(result.history)}")
    out_console.print(f"  {result.wall_s:.0f} s; see MODEL_CARD.md")


def _with_progress(quiet: bool, run: Any) -> Any:
    """Run ``run(progress, on_epoch)`` under a rich progress display (or silently)."""
    if quiet:
        return run(None, None)
    with progress_bars(quiet=False) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            key = "epoch" if stage.startswith("epoch") else stage
            if key not in tasks:
                tasks[key] = bar.add_task(stage, total=total)
            bar.update(tasks[key], completed=done, total=total, description=stage)

        def on_epoch(log: Any) -> None:
            bar.console.print(
                f"epoch {log.epoch}: train loss {log.train_loss:.3f}, val loss {log.val_loss:.3f}, "
                f"val mean recall {log.val_mean_recall:.1%} ({log.seconds:.1f} s)",
                highlight=False,
            )

        return run(progress, on_epoch)
