"""``leasehold token``: tokens made on the command line work against the API's store."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from leasehold.api.cli.main import main
from leasehold.scheduler.auth import TokenStore, digest
from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import Scheduler


def _fields(out: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in out.strip().splitlines())


async def _store(redis: aioredis.Redis, settings: Settings) -> TokenStore:
    scheduler = Scheduler(redis, settings)
    await scheduler.start()
    return TokenStore(redis, scheduler.scripts, scheduler.keys, [])


def test_generate_prints_a_fresh_admin_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "generate"]) == 0
    first = capsys.readouterr()
    assert main(["token", "generate"]) == 0
    second = capsys.readouterr()
    assert first.out.startswith("lha_") and first.out != second.out
    assert digest(first.out.strip()) in first.err


async def test_create_and_delete_an_api_token(
        redis: aioredis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEASEHOLD_REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("LEASEHOLD_NAMESPACE", settings.namespace)
    assert await _run(["token", "create", "--role", "viewer", "--name", "grafana"]) == 0
    created = _fields(capsys.readouterr().out)
    store = await _store(redis, settings)
    who = await store.authenticate(created["token"])
    assert who is not None and who.role == "viewer" and who.name == "grafana"
    assert await _run(["token", "delete", created["id"]]) == 0
    capsys.readouterr()
    assert await store.authenticate(created["token"]) is None
    assert await _run(["token", "create", "--role", "worker", "--name", "x"]) == 1
    assert "role must be one of" in capsys.readouterr().err


async def test_registration_token_registers_once(
        redis: aioredis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LEASEHOLD_REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("LEASEHOLD_NAMESPACE", settings.namespace)
    assert await _run(["token", "registration", "--ttl", "60"]) == 0
    issued = _fields(capsys.readouterr().out)
    assert issued["token"].startswith("lhr_") and int(issued["expires_at_ms"]) > 0
    raw = await redis.hgetall(f"{{{settings.namespace}}}:regtoken:{digest(issued['token'])}")
    assert raw["uses_left"] == "1"


def test_management_needs_a_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEASEHOLD_REDIS_URL", raising=False)
    assert main(["token", "create", "--role", "viewer", "--name", "x"]) == 2


async def _run(argv: list[str]) -> int:
    """The command runs its own event loop, so it goes to a thread from this async test."""
    return await asyncio.to_thread(main, argv)
