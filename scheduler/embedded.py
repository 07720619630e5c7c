"""An embedded Redis for one-command local runs: a private redis-server child (or fakeredis on
request), the data directory's lock and its saved admin token."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

import redis

from leasehold.scheduler.auth import new_secret

FAKE_URL = "fakeredis://embedded"
LOCK_FILE = "serve.lock"
ADMIN_TOKEN_FILE = "admin-token"


class DataDirInUse(Exception):
    """Another ``leasehold serve`` (or the redis-server it started) holds the data directory."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        super().__init__(f"{data_dir} is in use by leasehold serve pid {holder or '?'} (or the "
                         "redis-server it started)")


class DataDirLock:
    """An exclusive flock on ``<data_dir>/serve.lock`` for the life of the process, shared with
    the embedded redis-server so that an orphaned server keeps it too."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.fd: int | None = None

    def acquire(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise DataDirInUse(self.data_dir, holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def saved_admin_token(data_dir: Path) -> tuple[str, Path, bool]:
    """The admin token kept in ``<data_dir>/admin-token`` (mode 0600), made on first use:
    (token, path, whether it was just made)."""
    path = data_dir / ADMIN_TOKEN_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    token = new_secret("lha_")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        saved = path.read_text().strip()
        if saved:
            os.chmod(path, 0o600)
            return saved, path, False
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token, path, True


class EmbeddedRedis:
    """Runs ``redis-server`` on a unix socket with AOF data in ``data_dir`` for the process's life.

    Without the binary, ``start()`` returns ``FAKE_URL`` (state in process memory, lost at exit);
    ``leasehold serve`` checks ``available`` first and uses that only when asked to.
    """

    def __init__(self, data_dir: Path, lock: DataDirLock | None = None) -> None:
        self.data_dir = data_dir
        self.lock = lock
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
            pass_fds=() if self.lock is None or self.lock.fd is None else (self.lock.fd,),
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
