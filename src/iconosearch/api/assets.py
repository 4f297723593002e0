"""Where the web UI and its vendored OpenSeadragon live, for a source checkout and for an installed package.

Looked up in order: ``$ICONOSEARCH_WEB_DIR``; ``web/`` of the source checkout (editable installs); a
``web/`` copy inside the package (wheels built after ``make web``). OpenSeadragon comes from npm
(``make web`` → ``web/node_modules/openseadragon``) or from a vendored copy in ``web/vendor/``; Mirador
and swagger-ui from npm.
"""

from __future__ import annotations

import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent
OSD_SUBDIRS = ("node_modules/openseadragon/build/openseadragon", "vendor/openseadragon")


def web_dir() -> Path | None:
    candidates: list[Path] = []
    env = os.environ.get("ICONOSEARCH_WEB_DIR")
    if env:
        candidates.append(Path(env))
    candidates += [_HERE.parents[2] / "web", _HERE / "web"]
    return next((c for c in candidates if (c / "index.html").is_file()), None)


def openseadragon_dir(web: Path | None) -> Path | None:
    if web is None:
        return None
    return next((web / sub for sub in OSD_SUBDIRS if (web / sub / "openseadragon.min.js").is_file()), None)


def swagger_ui_dir(web: Path | None) -> Path | None:
    """swagger-ui-dist from npm (``make web``), for an API docs page that needs no CDN."""
    if web is None:
        return None
    path = web / "node_modules" / "swagger-ui-dist"
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def mirador_dir(web: Path | None) -> Path | None:
    """Mirador's self-contained build from npm (``make web``), for the viewer page at ``/viewer/``."""
    if web is None:
        return None
    path = web / "node_modules" / "mirador" / "dist"
    return path if (path / "mirador.min.js").is_file() else None
