"""Start-up checks of serve, reaper and agent: settings, Redis, the data directory; each refusal
is one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import asyncio
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from leasehold.scheduler.config import Settings
from leasehold.scheduler.connection import RedisUnavailable, redacted, wait_for_redis
from leasehold.scheduler.embedded import (
    FAKE_URL,
    DataDirInUse,
    DataDirLock,
    EmbeddedRedis,
    saved_admin_token,
)

_SECRET_FIELDS = frozenset({"admin_token", "metrics_token"})


class StartupError(Exception):
    """Stops a command before it serves: ``code`` 2 for a wrong setting, 1 for a missing
    dependency (Redis not answering)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _setting_name(loc: str, flags: dict[str, str]) -> str:
    if loc in flags:
        return flags[loc]
    info = Settings.model_fields.get(loc)
    if info is not None and info.validation_alias is not None:
        choices = getattr(info.validation_alias, "choices", [loc])
        return str(choices[0])
    return loc


def _shown(field_name: str, value: Any) -> str:
    if field_name in _SECRET_FIELDS or "TOKEN" in field_name or "SECRET" in field_name:
        return "(hidden)"
    if "REDIS_URL" in field_name or field_name == "--redis-url":
        return repr(redacted(str(value)))
    return repr(value)


def describe(exc: ValidationError, flags: dict[str, str]) -> str:
    """One line naming every wrong setting, its value (secrets hidden) and what it must be."""
    problems = []
    for error in exc.errors():
        loc = str(error["loc"][0]) if error["loc"] else "settings"
        name = _setting_name(loc, flags)
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{name}={_shown(name, error.get('input'))}: {message}")
    return "bad setting " + "; ".join(problems)


def load_settings(overrides: dict[str, Any] | None = None,
                  flags: dict[str, str] | None = None) -> Settings:
    """Settings from the environment plus flag ``overrides`` (field -> value); ``flags`` names the
    flag each override came from, for the error line."""
    try:
        return Settings(**(overrides or {}))
    except ValidationError as exc:
        raise StartupError(describe(exc, flags or {})) from None


def wait_for_redis_or_fail(settings: Settings, process: str) -> None:
    """Blocks until Redis answers (retrying for ``redis_wait_secs``) or raises StartupError."""
    try:
        asyncio.run(wait_for_redis(settings, process))
    except RedisUnavailable as exc:
        raise StartupError(
            f"Redis at {redacted(settings.redis_url or '')} did not answer within "
            f"{settings.redis_wait_secs:g}s (LEASEHOLD_REDIS_WAIT_SECS): {exc}", code=1) from None


def check_server_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StartupError(f"bad setting LEASEHOLD_SERVER / --server={url!r}: give the API's "
                           "http:// or https:// URL, e.g. http://scheduler:8080")


@dataclass
class LocalState:
    """What ``serve`` keeps in its data directory: the lock, the embedded Redis, the token."""

    data_dir: Path
    lock: DataDirLock | None = None
    embedded: EmbeddedRedis | None = None
    notes: list[str] = field(default_factory=list)

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()
        if self.lock is not None:
            self.lock.release()


def open_redis(settings: Settings, state: LocalState, ephemeral: bool) -> Settings:
    """The settings with a Redis URL: the configured one once it answers, else an embedded
    redis-server in the data directory, else (only with ``ephemeral``) in-process fakeredis."""
    if settings.redis_url is not None:
        if ephemeral:
            raise StartupError("--ephemeral keeps state in this process; it cannot be combined "
                               "with LEASEHOLD_REDIS_URL / --redis-url")
        wait_for_redis_or_fail(settings, "serve")
        state.notes.append(f"Redis: {redacted(settings.redis_url)}")
        return settings
    if not settings.embedded:
        raise StartupError("LEASEHOLD_REDIS_URL is not set (and LEASEHOLD_EMBEDDED=off): set it, "
                           "or give --redis-url")
    if ephemeral:
        state.notes.append("Redis: in this process only (--ephemeral): everything is lost at exit")
        return settings.model_copy(update={"redis_url": FAKE_URL})
    if shutil.which("redis-server") is None:
        raise StartupError("no LEASEHOLD_REDIS_URL and no redis-server on PATH: install "
                           "redis-server, set LEASEHOLD_REDIS_URL, or pass --ephemeral to keep "
                           "state in this process only (lost at exit)")
    state.lock = DataDirLock(state.data_dir)
    try:
        state.lock.acquire()
    except DataDirInUse as exc:
        state.lock = None
        raise StartupError(f"data dir {exc}; stop it or give another --data-dir") from None
    state.embedded = EmbeddedRedis(state.data_dir / "redis", state.lock)
    try:
        url = state.embedded.start()
    except (RuntimeError, OSError) as exc:
        raise StartupError(f"the embedded redis-server did not start: {exc}", code=1) from None
    state.notes.append(f"Redis: embedded redis-server, data in {state.data_dir / 'redis'}")
    return settings.model_copy(update={"redis_url": url})


def admin_token(settings: Settings, state: LocalState) -> Settings:
    """Without LEASEHOLD_ADMIN_TOKEN, the data directory's saved token (made on first start)."""
    if not settings.auth or settings.admin_token:
        return settings
    try:
        token, path, _ = saved_admin_token(state.data_dir)
    except OSError as exc:
        raise StartupError(f"cannot keep the admin token in {state.data_dir} ({exc.strerror}): "
                           "set LEASEHOLD_ADMIN_TOKEN or give a writable --data-dir") from None
    state.notes.append(f"Admin token: {token}  (kept in {path})")
    return settings.model_copy(update={"admin_token": token})


def banner(lines: list[str]) -> None:
    """For the person at the terminal: stderr, so that stdout stays one JSON object a line."""
    for line in lines:
        print(line, file=sys.stderr, flush=True)
