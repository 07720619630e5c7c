"""One harness for tests that run real processes: start, log files, JSON log lines, stop.

Every child starts in its own session, so one signal reaches it (and only it), with its stdout
(structlog JSON lines) and stderr going to files. Chaos, ops and end-to-end tests all use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from tests.redis_server import free_port

BIN = Path(sys.executable).parent / "leasehold"
ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_SECS = 20.0


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


def http_ready(url: str) -> bool:
    """Whether ``url/readyz`` answers 200 now."""
    with (contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError, OSError),
          urllib.request.urlopen(url + "/readyz", timeout=1) as resp):
        return bool(resp.status == 200)
    return False


class Child:
    """One child process in a new session; stdout and stderr go to ``<name>.out``/``.err``."""

    def __init__(self, argv: list[str], env: dict[str, str], log_dir: Path, name: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.out, self.err = log_dir / f"{name}.out", log_dir / f"{name}.err"
        with self.out.open("ab") as stdout, self.err.open("ab") as stderr:
            self.proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=stderr,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         cwd=ROOT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        """Sends ``sig`` to the child's whole process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group, and reap it."""
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def kill_tree(self) -> None:
        """Like a dead host: SIGKILL the child and the groups its own children lead (an agent
        runs each job's shell in a session of its own)."""
        groups = child_pids(self.proc.pid)
        self.kill()
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM (after SIGCONT: a stopped process cannot act on it), then SIGKILL the group
        when it has not exited within ``timeout`` seconds."""
        if self.alive():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        self.kill()

    def logs(self, event: str | None = None) -> list[dict[str, Any]]:
        return json_log_records(self.out, event)

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")[-3000:]

    def wait_ready(self, url: str, timeout: float = READY_TIMEOUT_SECS) -> None:
        """Blocks until ``url/readyz`` answers 200; raises with the child's stderr if it exits."""
        deadline = time.monotonic() + timeout
        while not http_ready(url):
            if not self.alive():
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.stderr()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready after {timeout}s")
            time.sleep(0.05)

    async def wait_exit(self, within: float) -> int:
        deadline = time.monotonic() + within
        while self.alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} ({self.pid}) still running after {within}s; "
                                     f"stderr: {self.stderr()}")
            await asyncio.sleep(0.05)
        return self.proc.returncode


def leasehold(args: list[str], env: dict[str, str], log_dir: Path, name: str) -> Child:
    """Starts ``leasehold <args>``."""
    return Child([str(BIN), *args], env, log_dir, name)


def serve_processes(procs: list[Child], env: dict[str, str], log_dir: Path,
                    *flags: str, count: int = 2) -> list[str]:
    """Starts ``count`` ``leasehold serve`` processes (``serve-a``, ``serve-b``...) on free
    ports, appended to ``procs``; returns their URLs once every one is ready."""
    urls = []
    for n in range(count):
        port = free_port()
        procs.append(leasehold(["serve", *flags, "--port", str(port)], env, log_dir,
                               f"serve-{chr(ord('a') + n)}"))
        urls.append(f"http://127.0.0.1:{port}")
    for child, url in zip(procs[-count:], urls, strict=True):
        child.wait_ready(url)
    return urls


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """A list to append started children to; all are stopped at exit, pass or fail."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            child.stop(timeout=10)


async def wait_for(predicate: Any, within: float, what: str, interval: float = 0.05) -> None:
    """Polls ``predicate()`` (sync, or returning an awaitable) until true."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)
