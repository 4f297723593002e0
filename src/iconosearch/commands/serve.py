"""`iconosearch serve`: the search API and web UI with uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from iconosearch.commands._common import err_console, fail, state


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        ctx: typer.Context,
        host: Annotated[
            str | None, typer.Option(help="Interface to listen on (default: server.host, 127.0.0.1).")
        ] = None,
        port: Annotated[
            int | None, typer.Option(help="Port (default: server.port, 8000).", min=1, max=65535)
        ] = None,
        reload_interval: Annotated[
            float,
            typer.Option(help="Seconds between checks for a new index version (0: only on admin reload)."),
        ] = 5.0,
    ) -> None:
        """Serve the search API and web UI; new index versions are picked up without restart."""
        import uvicorn

        from iconosearch.api.app import create_app

        cli = state(ctx)
        settings = cli.settings()
        bind_host = host or settings.server.host
        bind_port = port or settings.server.port
        try:
            api = create_app(settings, reload_interval_s=reload_interval, settle_heap=True)
        except Exception as exc:  # a broken data dir or index must say so, not dump a traceback
            fail(f"cannot start the service: {exc}")
        if not cli.quiet:
            err_console.print(
                f"iconosearch serving http://{bind_host}:{bind_port}/ "
                f"(API docs at /docs; data in {settings.data_dir})",
                highlight=False,
            )
        uvicorn.run(
            api,
            host=bind_host,
            port=bind_port,
            log_level="warning" if cli.quiet else "info",
            proxy_headers=True,
            timeout_graceful_shutdown=5,
        )
