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
            bool,
            typer.Option(
                "--check", help="Only check the served version: every file's checksum, then FAISS ids."
            ),
        ] = False,
        rollback: Annotated[
            bool,
            typer.Option(
                "--rollback",
                help="Only switch CURRENT to VERSION (the argument), or to the newest intact older one.",
            ),
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
        from iconosearch.index.store import IndexStore, IndexStoreError
        from iconosearch.index.versions import BuildOptions

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
            _check(store, st.json_output)
        if rollback:
            _rollback(store, collections[0] if collections else None, st.json_output, st.quiet)
            return
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
                from iconosearch.index.versions import compact as compact_version

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


def _check(store: Any, json_output: bool) -> None:
    from iconosearch.index.store import IndexStoreError
    from iconosearch.index.verify import check_version

    try:
        version = store.current()
    except IndexStoreError as exc:
        fail(str(exc))
    if version is None:
        fail(f"index {store.name!r} has no version yet")
    report = check_version(version)
    if json_output:
        emit_json({**asdict(report), "ok": report.ok})
    else:
        for f in report.files:
            line = f"  {f.name:<18} {f.status}" + (f": {f.detail}" if f.detail else "")
            (out_console if f.status in ("ok", "unchecked") else err_console).print(line, highlight=False)
        for problem in report.problems:
            err_console.print(f"  {problem}", highlight=False)
        verdict = "intact and consistent" if report.ok else "DAMAGED"
        (out_console if report.ok else err_console).print(
            f"index {store.name} version {report.version}: {verdict}", highlight=False
        )
    raise typer.Exit(0 if report.ok else 1)


def _rollback(store: Any, version: str | None, json_output: bool, quiet: bool) -> None:
    from iconosearch.index.store import IndexStoreError
    from iconosearch.index.verify import IndexDamagedError, rollback_target

    before = store.current_name()
    try:
        with store.building():  # a writer like any other: not while a build is switching CURRENT
            target = rollback_target(store, version)
            store.switch(target)
    except (IndexDamagedError, IndexStoreError) as exc:
        fail(str(exc))
    if json_output:
        emit_json({"previous": before, "current": target})
    elif not quiet:
        out_console.print(f"index {store.name}: CURRENT switched from {before} to {target}")


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
