"""`iconosearch index`: build, update, check and clean up index versions."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from iconosearch.commands._common import (
    emit_json,
    err_console,
    fail,
    harvested_collections,
    out_console,
    progress_bars,
    stage_updater,
    state,
)


def register(app: typer.Typer) -> None:
    @app.command("index")
    def index(
        ctx: typer.Context,
        collections: Annotated[
            list[str] | None, typer.Argument(help="Collections to index (default: all configured).")
        ] = None,
        name: Annotated[str, typer.Option("--name", help="Index name.")] = "default",
        incremental: Annotated[
            bool,
            typer.Option("--incremental", help="Update the served version: add new/changed, drop deleted."),
        ] = False,
        check: Annotated[
            bool, typer.Option("--check", help="Only check the served version: FAISS ids == metadata ids.")
        ] = False,
        gc: Annotated[
            bool, typer.Option("--gc", help="Only delete versions superseded longer ago than --grace.")
        ] = False,
        compact: Annotated[
            bool, typer.Option("--compact", help="Only rebuild the served version from its stored vectors.")
        ] = False,
        grace: Annotated[
            float, typer.Option("--grace", help="Seconds an old version is kept.", min=0)
        ] = 3600.0,
        kind: Annotated[
            str | None,
            typer.Option(
                "--kind", help="FAISS index type: flat, ivf-flat, ivf-sq8, ivf-pq, hnsw (default: by size)."
            ),
        ] = None,
        model: Annotated[
            str | None,
            typer.Option("--model", help="Model spec to embed with (default: the configured one)."),
        ] = None,
        memory_gb: Annotated[
            float | None,
            typer.Option(
                "--memory-gb",
                help="Memory budget of the FAISS index; picks a compressed type beyond.",
                min=0.01,
            ),
        ] = None,
        shards: Annotated[
            int,
            typer.Option(
                "--shards",
                help="Split the FAISS index into N shards, searched and merged exactly (full builds).",
                min=1,
            ),
        ] = 1,
        ray: Annotated[
            str | None,
            typer.Option(
                "--ray",
                metavar="ADDRESS",
                help="Embed on a Ray cluster: auto, ray://host:10001, or local (default: [ray] address).",
            ),
        ] = None,
    ) -> None:
        """Embed harvested images and build a new index version, switched in atomically."""
        from iconosearch.datadir import DataDir
        from iconosearch.index import faiss_index
        from iconosearch.index.builder import BuildOptions, check_consistency
        from iconosearch.index.store import IndexStore, IndexStoreError

        st = state(ctx)
        settings = st.settings()
        if ray is not None:
            settings = settings.model_copy(update={"ray": settings.ray.model_copy(update={"address": ray})})
        if kind is not None and kind not in faiss_index.KINDS:
            fail(f"unknown --kind {kind!r}; choose one of {', '.join(faiss_index.KINDS)}", code=2)
        try:
            store = IndexStore(DataDir(settings.data_dir).indexes, name)
        except IndexStoreError as exc:
            fail(str(exc), code=2)
        if check:
            version = store.current()
            if version is None:
                fail(f"index {name!r} has no version yet")
            report = check_consistency(version)
            if st.json_output:
                emit_json({**asdict(report), "ok": report.ok})
            elif report.ok:
                out_console.print(
                    f"index {name} version {report.version}: {report.count} records, consistent"
                )
            else:
                err_console.print(
                    f"index {name} version {report.version} is INCONSISTENT: "
                    f"{len(report.faiss_only)} ids only in FAISS, "
                    f"{len(report.metadata_only)} only in metadata, "
                    f"vector rows {'ok' if report.vector_rows_ok else 'wrong'}; {'; '.join(report.problems)}"
                )
            raise typer.Exit(0 if report.ok else 1)
        if gc:
            removed = store.gc(grace_s=grace)
            if st.json_output:
                emit_json({"removed": removed, "versions": store.versions(), "current": store.current_name()})
            elif not st.quiet:
                out_console.print(f"removed {len(removed)} old version(s); {len(store.versions())} left")
            return
        options = BuildOptions(kind=kind, shards=shards)
        if memory_gb is not None:
            options = BuildOptions(kind=kind, shards=shards, memory_budget=int(memory_gb * 1024**3))
        # A IIIF URL harvested by itself is a named collection too (the name `harvest` printed).
        known = set(settings.collections) | harvested_collections(settings.data_dir)
        unknown = [c for c in collections or [] if c not in known]
        if unknown:
            names = ", ".join(sorted(known)) or "none"
            fail(f"unknown collection(s): {', '.join(unknown)} (configured or harvested: {names})", code=2)
        try:
            if compact:
                from iconosearch.index.builder import compact as compact_version

                version = compact_version(store, options=options)
            else:
                quiet = st.quiet or st.json_output
                version = _build(settings, name, collections or [], incremental, options, quiet, model)
        except IndexStoreError as exc:
            fail(str(exc))
        except Exception as exc:
            from iconosearch.models.ray_embed import RayUnavailableError
            from iconosearch.models.specs import ModelSpecError, ModelUnavailableError

            if isinstance(exc, ModelSpecError | ModelUnavailableError | RayUnavailableError):
                fail(str(exc))
            raise
        removed = store.gc(grace_s=grace)
        m = version.manifest
        if st.json_output:
            emit_json({**asdict(m), "path": str(version.path), "gc_removed": removed})
            return
        if not st.quiet:
            recall = "exact" if m.recall_at_10 is None else f"recall@10 {m.recall_at_10:.3f}"
            out_console.print(
                f"index [bold]{name}[/] version [bold]{m.version}[/]: {m.count} records of "
                f"{', '.join(m.collections)}; {m.faiss_type} ({recall}); model {m.model_spec}"
                + (f"; {len(m.failures)} image(s) failed" if m.failures else ""),
                soft_wrap=True,  # the model spec and version are copied: no hard line breaks inside them
            )


def _build(
    settings: Any,
    name: str,
    collections: list[str],
    incremental: bool,
    options: Any,
    quiet: bool,
    model: str | None,
) -> Any:
    from iconosearch.index.builder import build_index
    from iconosearch.models.embedder import load_embedder

    embedder = load_embedder(model or settings.model)
    if quiet:
        return build_index(settings, name, collections, embedder, incremental=incremental, options=options)
    with progress_bars(quiet=quiet) as bars:
        return build_index(
            settings,
            name,
            collections,
            embedder,
            incremental=incremental,
            progress=stage_updater(bars),
            options=options,
        )
