"""The one logging set-up: structlog and stdlib loggers (aiohttp, asyncio, redis) share a renderer.

Every line is one JSON object (orjson) with ``timestamp``, ``level``, ``logger``, ``event`` and
the context bound per request (``request_id``); on a terminal it is structlog's console format.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import Processor

LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_HANDLER = "leasehold"  # the root handler this module owns, replaced on reconfiguration


def _dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _formatter(console: bool, colors: bool, shared: list[Processor]
               ) -> structlog.stdlib.ProcessorFormatter:
    renderer: Processor
    if console:
        tail: list[Processor] = []
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
    else:
        tail = [structlog.processors.format_exc_info]
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
    )


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None,
                      with_pid: bool = False) -> None:
    """``fmt`` "auto" is the console format when ``stream`` (default stdout) is a TTY, else JSON.
    An unknown level or format is a ValueError, never a silent default. ``with_pid``: each line
    names its process (one of several API processes sharing a port and a log)."""
    out = stream or sys.stdout
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None or level.lower() not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LOG_LEVELS)}")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; use one of {', '.join(LOG_FORMATS)}")
    tty = out.isatty()
    console = fmt == "console" or (fmt == "auto" and tty)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if with_pid:
        pid = os.getpid()
        shared.append(lambda _logger, _name, event: {**event, "pid": pid})
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER)
    handler.setFormatter(_formatter(console, tty, shared))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
