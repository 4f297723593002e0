"""`iconosearch search`: query an index from the command line."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from iconosearch.commands._common import fail, out_console, state
from iconosearch.query import Query, QueryError, SearchMode, SearchPage, Term, parse_filters
from iconosearch.subjects.suggested import parse_divisions

if TYPE_CHECKING:
    from iconosearch.config import Settings
    from iconosearch.records import ImageRecord

FILTER_HELP = (
    "KEY=VALUE, repeatable: collection=NAME, provider=NAME, year=1600-1700 (or 1650, 1600.., ..1700; "
    "-50 is 50 BCE), rights=open|restricted|unknown, lang=en, has_caption=yes|no. Repeating a key ORs values."
)


def record_label(record: Any) -> str:
    """The title a person knows the record by (canvas label, else manifest label), else its id."""
    for labels in (record.canvas_label, record.manifest_label):
        for lang in ("en", "none", *labels):
            if labels.get(lang):
                return str(labels[lang][0])
    return record.id


def register(app: typer.Typer) -> None:
    @app.command("search")
    def search(
        ctx: typer.Context,
        text: Annotated[
            str | None,
            typer.Argument(help="What to look for, in words; 'iconclass:25G21(APPLE)' names a subject."),
        ] = None,
        image: Annotated[
            list[Path] | None, typer.Option("--image", help="Query image file (repeatable).")
        ] = None,
        item: Annotated[
            list[str] | None, typer.Option("--item", help="'More like this' record id (repeatable).")
        ] = None,
        region: Annotated[
            str | None,
            typer.Option(
                "--region",
                help="Search by this detail of the --item image: x,y,w,h in its pixels, or pct:x,y,w,h.",
            ),
        ] = None,
        negative: Annotated[
            list[str] | None, typer.Option("--not", help="Text to push results away from (weight −0.5).")
        ] = None,
        keywords: Annotated[
            str | None, typer.Option("--keywords", "-w", help="Words the caption must contain.")
        ] = None,
        filters: Annotated[list[str] | None, typer.Option("--filter", "-f", help=FILTER_HELP)] = None,
        k: Annotated[int, typer.Option("--k", "-k", help="Results per page.", min=1)] = 10,
        min_score: Annotated[
            float | None, typer.Option("--min-score", help="Drop results below this cosine.")
        ] = None,
        cursor: Annotated[str | None, typer.Option("--cursor", help="Continue from a previous page.")] = None,
        no_collapse: Annotated[
            bool, typer.Option("--no-collapse", help="Show near-duplicates separately.")
        ] = False,
        name: Annotated[str, typer.Option("--name", help="Index name.")] = "default",
        language: Annotated[
            str | None,
            typer.Option("--lang", help="Language of the words (e.g. de); subjects are resolved to it."),
        ] = None,
        suggested_division: Annotated[
            list[str] | None,
            typer.Option(
                "--suggested-division",
                help="Keep images whose best machine-suggested ICONCLASS subject is in this top-level "
                "division, 0-9 (repeatable, or 1,7); needs an index built with [subjects] suggest.",
            ),
        ] = None,
        show_facets: Annotated[
            bool,
            typer.Option(
                "--facets",
                help="Also print the counts per collection, institution, rights, century and "
                "suggested division.",
            ),
        ] = False,
        mode: Annotated[
            SearchMode | None,
            typer.Option(
                "--mode",
                help="hybrid: words also matched on titles, descriptions and subjects; vector: the "
                "embedding alone. Default: [search] mode (hybrid).",
            ),
        ] = None,
    ) -> None:
        """Search an index from the command line."""
        from iconosearch.index.engine import IndexNotReadyError, ModelMismatchError, SearchEngine
        from iconosearch.index.store import IndexStoreError

        st = state(ctx)
        settings = st.settings()
        terms = [Term("text", text)] if text and text.strip() else []
        for path in image or []:
            try:
                terms.append(Term("image", path.read_bytes()))
            except OSError as exc:
                fail(f"cannot read image {path}: {exc.strerror or exc}", code=2)
        if region is not None and not item:
            fail("--region names a detail of an --item image: give --item too", code=2)
        terms.extend(Term("item", rid, region=region) for rid in item or [])
        terms.extend(Term("text", t, -0.5) for t in negative or [])
        try:
            query = Query(
                terms=tuple(terms),
                filters=replace(
                    parse_filters(filters or []),
                    suggested_divisions=parse_divisions(suggested_division or []),
                ),
                keywords=keywords,
                min_score=min_score,
                k=k,
                cursor=cursor,
                collapse_duplicates=not no_collapse,
                language=language.strip().lower() if language and language.strip() else None,
                mode=mode,
            )
            engine = SearchEngine.open(
                settings.data_dir,
                name,
                limits=settings.limits,
                allow_url_queries=settings.server.allow_url_queries,
                encoder=settings.encoder,
                search_mode=settings.search.mode,
            )
            started = time.perf_counter()
            page = engine.search(query)
        except QueryError as exc:
            fail(str(exc), code=2)
        except (IndexNotReadyError, IndexStoreError, ModelMismatchError) as exc:
            fail(str(exc))
        except Exception as exc:
            from iconosearch.models.specs import ModelSpecError, ModelUnavailableError

            if isinstance(exc, ModelSpecError | ModelUnavailableError):
                fail(f"cannot load the index's model: {exc}")
            raise
        if st.json_output:
            _emit_api_document(settings, page, query, started)
        else:
            _print_page(page, name)
            if show_facets:
                _print_facets(page.facets, query.language)


def _emit_api_document(settings: Settings, page: SearchPage, query: Query, started: float) -> None:
    """The very document GET /api/search returns (same schema, same presenter), with links made against
    the configured public address."""
    import orjson

    from iconosearch.api.presenting import Presenter

    server = settings.server
    base = server.public_url or f"http://{server.host}:{server.port}"
    presenter = Presenter(base_url=base.rstrip("/"), viewers=server.viewers)
    body = presenter.search_json(page, sort=query.sort, facets=page.facets or None, started=started)
    doc = orjson.loads(body)
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


def _date_text(record: ImageRecord) -> str:
    d = record.date
    if d is None:
        return ""
    return str(d.start_year) if d.start_year == d.end_year else f"{d.start_year}–{d.end_year}"


def _print_page(page: SearchPage, name: str) -> None:
    from rich.table import Table

    from iconosearch.rights import rights_class

    table = Table(
        title=f"{len(page.hits)} result(s) — index {name} {page.index_version}", title_justify="left"
    )
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("title", overflow="fold", max_width=48)
    table.add_column("collection")
    table.add_column("date")
    table.add_column("rights")
    table.add_column("id", no_wrap=True, min_width=16)  # full ids: they are copied into --item, URLs
    table.add_column("dups", justify="right")
    for rank, hit in enumerate(page.hits, start=1):
        r = hit.record
        dups = str(len(hit.duplicates)) if hit.duplicates else ""
        rights = rights_class(r.rights)
        cells = (f"{hit.score:.3f}", record_label(r), r.collection, _date_text(r), rights, r.id, dups)
        table.add_row(str(rank), *cells)
    out_console.print(table)
    out_console.print(
        f"[dim]embed {page.embed_ms:.1f} ms, search {page.search_ms:.1f} ms[/]"
        + (f"\nnext page: --cursor {page.next_cursor}" if page.next_cursor else ""),
        highlight=False,
    )


def _print_facets(facets: dict[str, dict[str, int]], language: str | None) -> None:
    """One line per facet value; suggested divisions are named from ICONCLASS in ``language``."""
    from rich.table import Table

    from iconosearch.subjects.suggested import division_labels

    divisions = facets.get("suggested_division", {})
    names = division_labels(divisions, language) if divisions else {}
    table = Table(title="facets", title_justify="left")
    table.add_column("facet")
    table.add_column("value", overflow="fold")
    table.add_column("count", justify="right")
    for facet, counts in facets.items():
        for value, count in counts.items():
            shown = f"{value} {names[value]} (machine-suggested)" if value in names else value
            table.add_row(facet, Text(shown), str(count))
    out_console.print(table)
