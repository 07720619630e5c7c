"""``configure_logging``: structlog and third-party stdlib logs leave through one renderer."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest
import structlog

from leasehold.api.server.logging import configure_logging


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The set-up is process-global: put structlog and the root logger back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_for_structlog_and_stdlib_loggers_with_the_request_context() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out)  # not a TTY: JSON
    structlog.contextvars.bind_contextvars(request_id="r-1")
    structlog.get_logger("leasehold.test").info("job_claimed", job_id="q.j", queue="q")
    logging.getLogger("aiohttp.server").error("Error handling request from %s", "10.0.0.1")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    structlog.get_logger("leasehold.test").debug("hidden below info")

    ours, aiohttp_line, asyncio_line = _lines(out)
    assert ours == {**ours, "event": "job_claimed", "job_id": "q.j", "queue": "q",
                    "request_id": "r-1", "level": "info", "logger": "leasehold.test"}
    assert aiohttp_line == {**aiohttp_line, "event": "Error handling request from 10.0.0.1",
                            "level": "error", "logger": "aiohttp.server", "request_id": "r-1"}
    assert "ValueError: boom" in str(asyncio_line["exception"])
    assert all(str(line["timestamp"]).endswith("Z") for line in (ours, aiohttp_line))


def test_console_format_on_a_terminal_and_no_duplicate_handlers() -> None:
    tty = Terminal()
    configure_logging("info", stream=tty)
    configure_logging("info", stream=tty)  # reconfiguring replaces, never adds, the handler
    structlog.get_logger("leasehold.test").info("reaper_started", interval_secs=1.0)
    text = tty.getvalue()
    assert text.count("reaper_started") == 1
    assert not text.lstrip().startswith("{") and "interval_secs" in text


def test_format_can_be_forced_either_way() -> None:
    tty = Terminal()
    configure_logging("warning", "json", stream=tty)
    logging.getLogger("redis").warning("connection lost")
    assert _lines(tty)[0]["event"] == "connection lost"
    plain = io.StringIO()
    configure_logging("info", "console", stream=plain)
    structlog.get_logger("leasehold.test").info("hello")
    assert "hello" in plain.getvalue() and "\x1b[" not in plain.getvalue()  # no colour to files


@pytest.mark.parametrize(("level", "fmt"), [("verbose", "json"), ("info", "xml"), ("", "auto")])
def test_an_unknown_level_or_format_is_an_error_not_a_silent_default(level: str, fmt: str
                                                                     ) -> None:
    with pytest.raises(ValueError, match="unknown log"):
        configure_logging(level, fmt, stream=io.StringIO())
