"""Helpers the process-level tests share: a child's JSON log lines, and a process's children."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import orjson


def json_log_records(path: Path, event: str | None = None) -> list[dict[str, Any]]:
    """The JSON log lines a child wrote to ``path`` (optionally only one ``event``)."""
    records = []
    for line in path.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            record = orjson.loads(line)
            if isinstance(record, dict) and event in (None, record.get("event")):
                records.append(record)
    return records


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux /proc)."""
    children: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                children.extend(int(c) for c in (task / "children").read_text().split())
    return children
