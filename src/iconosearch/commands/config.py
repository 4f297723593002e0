"""`iconosearch config`: show the effective configuration."""

from __future__ import annotations

import sys
from typing import Any

import typer

from iconosearch.commands._common import emit_json, state
from iconosearch.config import resolve_config_path, settings_as_dict


def register(app: typer.Typer) -> None:
    config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)

    @config_app.command("show")
    def show(ctx: typer.Context) -> None:
        """Print the effective configuration (file + environment + defaults), secrets masked."""
        st = state(ctx)
        data = settings_as_dict(st.settings())
        if st.json_output:
            emit_json(data)
            return
        import tomli_w

        source = resolve_config_path(st.config_file)
        # Plain stdout, not rich: the output is a valid TOML file and must not be wrapped.
        sys.stdout.write(f"# effective configuration (file: {source or 'none, defaults'})\n")
        sys.stdout.write(tomli_w.dumps(_drop_none(data)))

    app.add_typer(config_app, name="config")


def _drop_none(value: Any) -> Any:
    # TOML has no null: leave unset optional keys out of the printed file.
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
