"""Runs one job's command under ``sh -c`` in its own process group, streaming its output lines."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from collections.abc import Callable
from pathlib import Path

import orjson
from pydantic import JsonValue

TAIL_LINES = 20
MAX_LINE = 64 * 1024

LineSink = Callable[[str, str], None]  # (stream, line)


class JobProcess:
    """A running command; ``stop()`` sends SIGTERM to its whole group, then SIGKILL after grace."""

    def __init__(self, proc: asyncio.subprocess.Process, sink: LineSink) -> None:
        self.proc = proc
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._sink = sink
        self._readers = [asyncio.create_task(self._pump(proc.stdout, "stdout")),
                         asyncio.create_task(self._pump(proc.stderr, "stderr"))]

    @classmethod
    async def start(cls, command: str, env: dict[str, str], sink: LineSink) -> JobProcess:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, limit=MAX_LINE)
        return cls(proc, sink)

    async def _pump(self, stream: asyncio.StreamReader | None, name: str) -> None:
        if stream is None:
            return
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the limit: take what is there
                raw = await stream.read(MAX_LINE)
            if not raw:
                return
            text = raw.decode(errors="replace")  # the line with its "\n", as the job wrote it
            self.tail.append(f"[{name}] {text.rstrip(chr(10))}")
            self._sink(name, text)

    async def wait(self) -> int:
        code = await self.proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        return code

    async def stop(self, grace_secs: float) -> None:
        if self.proc.returncode is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=grace_secs)
        except TimeoutError:
            self._signal(signal.SIGKILL)
            await self.proc.wait()
        # children that outlived the shell are still in the group
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


def read_outputs(path: Path) -> dict[str, JsonValue]:
    """Outputs a command wrote to ``$LEASEHOLD_OUTPUTS``: a JSON object or ``key=value`` lines."""
    try:
        text = path.read_text(errors="replace").strip()
    except FileNotFoundError:
        return {}
    if not text:
        return {}
    if text.startswith("{"):
        with contextlib.suppress(orjson.JSONDecodeError):
            value = orjson.loads(text)
            if isinstance(value, dict):
                return value
    outputs: dict[str, JsonValue] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            outputs[key.strip()] = value.strip()
    return outputs
