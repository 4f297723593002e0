"""Logging set-up: human-readable by default, JSON lines with ``--log-json``.

Secrets never reach the log: configuration is logged only through ``settings_as_dict``, which masks them,
and URLs are logged without credentials.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.logging import RichHandler


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "data", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class OwnInfoOnly(logging.Filter):
    """Third-party INFO (and DEBUG) records are dropped: open_clip alone logs about 12 lines per model load,
    on the root logger, so a per-logger level cannot catch them. ``--verbose`` shows everything."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".")[0] == "iconosearch"


def setup_logging(*, json_lines: bool = False, level: int = logging.INFO) -> None:
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if json_lines:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        # Logs go to stderr so that `--json` output on stdout stays machine-readable.
        handler = RichHandler(
            console=Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    if level > logging.DEBUG:
        handler.addFilter(OwnInfoOnly())
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries that log every request at INFO would drown the counts that matter.
    for noisy in ("httpx", "httpcore", "PIL", "urllib3", "filelock", "timm", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
