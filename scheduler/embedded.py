"""An embedded Redis for one-command local runs: a private redis-server child, else fakeredis."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

FAKE_URL = "fakeredis://embedded"


class EmbeddedRedis:
    """Runs ``redis-server`` on a unix socket with AOF data in ``data_dir`` for the process's life.

    Without the binary, ``start()`` returns ``FAKE_URL`` and the service keeps its state in
    process memory (lost at exit).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def available(self) -> bool:
        return shutil.which("redis-server") is not None

    def start(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            return FAKE_URL
        self.data_dir.mkdir(parents=True, exist_ok=True)
        socket_path = (self.data_dir / "redis.sock").resolve()
        socket_path.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
             "--dir", str(self.data_dir.resolve()), "--appendonly", "yes",
             "--appendfsync", "everysec", "--save", "", "--maxmemory-policy", "noeviction",
             "--daemonize", "no", "--logfile", str((self.data_dir / "redis.log").resolve())],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        url = f"unix://{socket_path}"
        self._wait(url)
        return url

    def _wait(self, url: str) -> None:
        deadline = time.monotonic() + 15
        while True:
            try:
                client = redis.Redis.from_url(url)
                try:
                    client.ping()
                    return
                finally:
                    client.close()
            except (redis.ConnectionError, FileNotFoundError):
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(
                        f"embedded redis-server exited; see {self.data_dir / 'redis.log'}"
                    ) from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
