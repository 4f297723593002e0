"""`iconosearch item ID`: one indexed image, with the catalogue's subjects and the machine-suggested ones."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from iconosearch.commands._common import fail, out_console, state

if TYPE_CHECKING:
    from iconosearch.config import Settings
    from iconosearch.records import ImageRecord
    from iconosearch.subjects.suggested import SuggestedSubject


def register(app: typer.Typer) -> None:
    @app.command("item")
    def item(
        ctx: typer.Context,
        record_id: Annotated[str, typer.Argument(metavar="ID", help="The record id (as search prints it).")],
        name: Annotated[str, typer.Option("--name", help="Index name.")] = "default",
        language: Annotated[
            str | None,
            typer.Option("--lang", help="Language of the suggested subjects' labels (en, de, fr, it, pt)."),
        ] = None,
    ) -> None:
        """Show one indexed image: its catalogue subjects and its machine-suggested ICONCLASS subjects."""
        from iconosearch.index.engine import IndexNotReadyError, SearchEngine
        from iconosearch.index.store import IndexStoreError
        from iconosearch.subjects import UnknownSubjectError
        from iconosearch.subjects.suggested import in_language

        st = state(ctx)
        settings = st.settings()
        engine = SearchEngine.open(settings.data_dir, name, limits=settings.limits)
        try:
            record = engine.get(record_id)
            if record is None:
                fail(f"no image {record_id!r} in index {name!r}")
            lang = language.strip().lower() if language and language.strip() else None
            suggested = in_language(engine.suggested_subjects(record_id), lang)
            duplicates = engine.duplicates(record_id)
        except (IndexNotReadyError, IndexStoreError) as exc:
            fail(str(exc))
        except UnknownSubjectError as exc:
            fail(str(exc))
        if st.json_output:
            _emit_api_document(settings, record, duplicates, suggested)
        else:
            _print_item(record, suggested)


def _emit_api_document(
    settings: Settings, record: ImageRecord, duplicates: tuple[str, ...], suggested: list[SuggestedSubject]
) -> None:
    """The very document GET /api/items/{id} returns (same schema, same presenter)."""
    import orjson

    from iconosearch.api.presenting import Presenter

    server = settings.server
    base = server.public_url or f"http://{server.host}:{server.port}"
    presenter = Presenter(base_url=base.rstrip("/"), viewers=server.viewers)
    doc = presenter.item(record, duplicates, suggested).model_dump(mode="json")
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


def _print_item(record: ImageRecord, suggested: list[SuggestedSubject]) -> None:
    from rich.table import Table
    from rich.text import Text

    from iconosearch.commands.search import record_label
    from iconosearch.subjects import catalogue_subjects

    # Text, not markup: catalogue texts may hold "[…]".
    show = out_console.print
    show(Text(record_label(record), style="bold"), soft_wrap=True)
    show(Text(f"id {record.id} · collection {record.collection}"), soft_wrap=True)
    subjects = catalogue_subjects(record)
    show(Text(f"Catalogue subjects: {'; '.join(subjects) if subjects else 'none'}"), soft_wrap=True)
    if not suggested:
        show(Text("Suggested subjects (machine): none (the index was built without [subjects] suggest)"))
        return
    table = Table(title="Suggested subjects (machine, ICONCLASS; not the catalogue's)", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("notation", no_wrap=True)
    table.add_column("label", overflow="fold")
    table.add_column("score", justify="right")
    for rank, s in enumerate(suggested, start=1):
        table.add_row(str(rank), Text(s.notation), Text(s.label), f"{s.score:.3f}")
    out_console.print(table)
