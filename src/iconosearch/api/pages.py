"""Documents behind the about page: the served model's card and the demo collection's datasheet, as HTML.

They are Markdown files kept with the model (``MODEL_CARD.md`` in its folder) and with the demo collection
(``demo/DATASHEET.md`` of a source checkout); raw HTML in them is not passed through.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from iconosearch.api.assets import web_dir
from iconosearch.api.problems import ProblemError
from iconosearch.relevance import model_folder

router = APIRouter(tags=["collections"])

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — iconosearch</title><link rel="stylesheet" href="/style.css"></head>
<body><header class="site-header"><div class="header-row"><p class="brand"><a href="/">iconosearch</a></p>
<nav class="site-nav" aria-label="Site"><a href="/about.html">About</a><a href="/help.html">Help</a></nav>
</div></header>
<main class="page document">{body}</main>
<footer class="site-footer"><a href="/docs">API documentation</a><a href="/readyz">Service health</a></footer>
</body></html>
"""


def render_markdown(text: str, title: str) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    return PAGE.format(title=html.escape(title), body=body)


def _document(path: Path | None, title: str, missing: str) -> HTMLResponse:
    if path is None or not path.is_file():
        raise ProblemError(404, "no-document", missing)
    return HTMLResponse(render_markdown(path.read_text(encoding="utf-8"), title))


@router.get(
    "/about/model-card",
    response_class=HTMLResponse,
    summary="The served model's card",
    responses={404: {"description": "The model has no model card here."}},
)
async def model_card(request: Request) -> HTMLResponse:
    """What the model that ranks the results was trained on, how it was measured, and where it fails."""
    engine = request.app.state.ctx.engine
    spec = engine.info().model_spec if engine.ready else None
    folder = model_folder(spec) if spec else None
    path = folder / "MODEL_CARD.md" if folder is not None else None
    return _document(path, "Model card", f"no model card is available for the model {spec!r}")


@router.get(
    "/about/datasheet",
    response_class=HTMLResponse,
    summary="The demo collection's datasheet",
    responses={404: {"description": "Not a source checkout with the demo collection."}},
)
async def datasheet() -> HTMLResponse:
    """Provenance, rights, selection and known biases of the bundled demo collection."""
    web = web_dir()
    path = web.parent / "demo" / "DATASHEET.md" if web is not None else None
    return _document(path, "Datasheet", "the demo collection's datasheet is only in a source checkout")
