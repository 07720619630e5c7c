"""Real ``leasehold`` child processes for ops tests: started in their own session, always killed."""

from __future__ import annotations

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

from tests.processes import json_log_records

BIN = Path(sys.executable).parent / "leasehold"


class Child:
    """One ``leasehold <args>``; its stdout (the JSON log lines) and stderr go to files."""

    def __init__(self, args: list[str], env: dict[str, str], log_dir: Path, name: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.out, self.err = log_dir / f"{name}.out", log_dir / f"{name}.err"
        with self.out.open("wb") as stdout, self.err.open("wb") as stderr:
            self.proc = subprocess.Popen([str(BIN), *args], env=env, stdout=stdout,
                                         stderr=stderr, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def logs(self, event: str | None = None) -> list[dict[str, Any]]:
        return json_log_records(self.out, event)

    def wait_http(self, url: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited {self.proc.returncode}: "
                                   f"{self.err.read_text(errors='replace')[-2000:]}")
            with (contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
                  urllib.request.urlopen(url + "/readyz", timeout=2) as resp):
                if resp.status == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready after {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """A list to append started children to; all are stopped at exit, pass or fail."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            child.stop()
