"""Every `iconosearch …` command in the README's (and the fine-tuning walkthrough's) shell blocks parses
against the real CLI.

Each command line is parsed by the very click commands `iconosearch` runs (without executing them), so a
renamed option, a missing argument or a dropped subcommand in either the README or the CLI fails here:
the README and `--help` cannot drift apart again.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import typer

from iconosearch.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", ROOT / "docs" / "finetune-walkthrough.md")
_BLOCK = re.compile(r"```(?:sh|bash|shell)\n(.*?)```", re.DOTALL)


def readme_commands() -> list[str]:
    commands: list[str] = []
    text = "\n".join(doc.read_text(encoding="utf-8") for doc in DOCS)
    for block in _BLOCK.findall(text):
        for raw in block.replace("\\\n", " ").splitlines():
            line = raw.strip()
            if not line.startswith("iconosearch") and " iconosearch " not in line:
                continue  # curl, make and other tools' lines
            for part in re.split(r"&&|;", line):
                words = shlex.split(part, comments=True)
                # Environment assignments in front of a command (VAR=value iconosearch …) are not arguments.
                while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                    words.pop(0)
                if words and words[0] == "iconosearch":
                    commands.append(shlex.join(words))
    return commands


def _parse(args: list[str]) -> None:
    command: click.Command = typer.main.get_command(app)
    ctx = command.make_context("iconosearch", args)
    while isinstance(command, click.Group):
        rest = [*ctx.protected_args, *ctx.args]
        if not rest:
            break
        _, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None
        command = sub
        ctx = command.make_context(command.name, rest, parent=ctx)


COMMANDS = readme_commands()


def test_the_readme_has_commands() -> None:
    assert len(COMMANDS) >= 8


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses(command: str) -> None:
    try:
        _parse(shlex.split(command)[1:])
    except click.UsageError as exc:
        pytest.fail(f"README command does not match the CLI: {command}\n  {exc.format_message()}")
    words = shlex.split(command)
    if len(words) > 1 and words[1] == "evaluate":
        # Parsing cannot see it: evaluate needs harvested collections, a pairs file, or a split naming them.
        assert {"--collection", "--pairs", "--split"} & set(words), command
