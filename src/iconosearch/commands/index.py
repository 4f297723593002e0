"""`iconosearch index`: build, update, check and clean up index versions."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

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

if TYPE_CHECKING:
    from iconosearch.config import Settings
    from iconosearch.index.store import IndexStore, IndexVersion
    from iconosearch.index.versions import BuildOptions


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
        from iconosearch.index.jobs import IndexRequestError, build_options
        from iconosearch.index.store import IndexStore, IndexStoreError

        st = state(ctx)
        settings = st.settings()
        if ray is not None:
            settings = settings.model_copy(update={"ray": settings.ray.model_copy(update={"address": ray})})
        try:
            options = build_options(kind, shards, memory_gb)
            store = IndexStore(DataDir(settings.data_dir).indexes, name)
        except (IndexRequestError, IndexStoreError) as exc:
            fail(str(exc), code=2)
        if check:
            _check(store, st.json_output)
        if rollback:
            _rollback(store, collections[0] if collections else None, st.json_output, st.quiet)
        elif gc:
            removed = store.gc(grace_s=grace)
            if st.json_output:
                emit_json({"removed": removed, "versions": store.versions(), "current": store.current_name()})
            elif not st.quiet:
                out_console.print(f"removed {len(removed)} old version(s); {len(store.versions())} left")
        else:
            quiet = st.quiet or st.json_output
            version = _build(settings, store, collections or [], incremental, options, quiet, model, compact)
            _print_built(store, version, store.gc(grace_s=grace), st.json_output, st.quiet)


def _print_built(
    store: IndexStore, version: IndexVersion, removed: list[str], json_output: bool, quiet: bool
) -> None:
    m = version.manifest
    if json_output:
        emit_json({**asdict(m), "path": str(version.path), "gc_removed": removed})
    elif not quiet:
        recall = "exact" if m.recall_at_10 is None else f"recall@10 {m.recall_at_10:.3f}"
        out_console.print(
            f"index [bold]{store.name}[/] version [bold]{m.version}[/]: {m.count} records of "
            f"{', '.join(m.collections)}; {m.faiss_type} ({recall}); model {m.model_spec}"
            + (f"; {len(m.failures)} image(s) failed" if m.failures else ""),
            soft_wrap=True,  # the model spec and version are copied: no hard line breaks inside them
        )
        from iconosearch.index.regions import cost_summary

        if line := cost_summary(m.count, m.regions, version.path):
            out_console.print(line, soft_wrap=True)


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


def _rollback(store: IndexStore, version: str | None, json_output: bool, quiet: bool) -> None:
    from iconosearch.index.jobs import roll_back
    from iconosearch.index.store import IndexStoreError
    from iconosearch.index.verify import IndexDamagedError

    try:
        before, target = roll_back(store, version)
    except (IndexDamagedError, IndexStoreError) as exc:
        fail(str(exc))
    if json_output:
        emit_json({"previous": before, "current": target})
    elif not quiet:
        out_console.print(f"index {store.name}: CURRENT switched from {before} to {target}")


def _build(
    settings: Settings,
    store: IndexStore,
    collections: list[str],
    incremental: bool,
    options: BuildOptions,
    quiet: bool,
    model: str | None,
    compact: bool,
) -> IndexVersion:
    """Build (or compact) a version; failures the user can act on end the command with their message."""
    from iconosearch.index.jobs import IndexRequestError, check_collections, index_collections
    from iconosearch.index.store import IndexStoreError
    from iconosearch.index.versions import compact as compact_version
    from iconosearch.models.ray_embed import RayUnavailableError
    from iconosearch.models.specs import ModelSpecError, ModelUnavailableError

    try:
        if compact:
            check_collections(settings, collections)
            return compact_version(store, options=options)
        with progress_bars(quiet=quiet) as bars:
            return index_collections(
                settings,
                store.name,
                collections,
                model=model,
                incremental=incremental,
                options=options,
                progress=None if quiet else stage_updater(bars),
            )
    except IndexRequestError as exc:
        fail(str(exc), code=2)
    except (IndexStoreError, ModelSpecError, ModelUnavailableError, RayUnavailableError) as exc:
        fail(str(exc))
