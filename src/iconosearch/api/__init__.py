"""The HTTP API and web UI (FastAPI): ``iconosearch.api.app.create_app(settings)``.

This file imports nothing: a package ``__init__`` that imports its own modules puts every module that
imports a sibling (``from iconosearch.api import schemas``) into an import cycle through it.
"""
