"""`iconosearch subjects`: ICONCLASS from the command line, as the API and the web UI offer it
(``suggest``: autocomplete from words in en/de/fr/it/pt; ``show``: one notation's label and keywords)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from iconosearch.commands._common import fail, out_console, state

LANG_HELP = "Language of the labels: en, de, fr, it, pt (others fall back to English)."


def register(app: typer.Typer) -> None:
    subjects_app = typer.Typer(help="ICONCLASS subjects: find notations, show one.", no_args_is_help=True)

    @subjects_app.command("suggest")
    def suggest(
        ctx: typer.Context,
        text: Annotated[str, typer.Argument(help="Words, in any of en, de, fr, it, pt (e.g. Apfel).")],
        language: Annotated[str, typer.Option("--lang", help=LANG_HELP)] = "en",
        limit: Annotated[int, typer.Option("--limit", "-k", min=1, max=50, help="At most this many.")] = 10,
    ) -> None:
        """Notations whose texts or keywords match the words, best first (what the search box suggests)."""
        from rich.table import Table
        from rich.text import Text

        from iconosearch.api.subjects import suggestions_document
        from iconosearch.subjects import vocabulary

        lang = language.strip().lower() or "en"
        doc = suggestions_document(text, lang, vocabulary("iconclass").suggest(text, lang, limit))
        if state(ctx).json_output:
            sys.stdout.write(doc.model_dump_json(indent=2) + "\n")
            return
        if not doc.suggestions:
            out_console.print(Text(f"no ICONCLASS subject matches {text!r}"))
            return
        table = Table(title=f"ICONCLASS subjects for {text!r} — search one with 'iconclass:NOTATION'")
        table.add_column("notation", no_wrap=True)
        table.add_column("label", overflow="fold")
        table.add_column("matched", overflow="fold")
        for x in doc.suggestions:
            table.add_row(Text(x.notation), Text(x.label), Text(f"{x.matched} ({x.matched_language})"))
        out_console.print(table)

    @subjects_app.command("show")
    def show(
        ctx: typer.Context,
        notation: Annotated[str, typer.Argument(help="An ICONCLASS notation, e.g. '11H(GEORGE)'.")],
        language: Annotated[str, typer.Option("--lang", help=LANG_HELP)] = "en",
    ) -> None:
        """One notation: its label in --lang and its keywords in every language."""
        from rich.text import Text

        from iconosearch.api.subjects import subject_document
        from iconosearch.subjects import UnknownSubjectError, parse_subject_ref, resolve

        try:
            scheme, code = parse_subject_ref(notation)
            doc = subject_document(resolve(scheme, code, language.strip().lower() or "en"))
        except UnknownSubjectError as exc:
            fail(str(exc), code=2)
        if state(ctx).json_output:
            sys.stdout.write(doc.model_dump_json(indent=2) + "\n")
            return
        out_console.print(Text(f"{doc.ref}  {doc.label} ({doc.label_language})"), soft_wrap=True)
        out_console.print(Text(f"keywords: {'; '.join(doc.keywords) or 'none'}"), soft_wrap=True)

    app.add_typer(subjects_app, name="subjects")
