"""Bad input (research/reliability.md 4D): hostile payloads that must be refused or stored
literally without touching other keys (tests/api/test_schemathesis.py fuzzes every route)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from leasehold.scheduler.config import Settings
from tests.api.harness import NO_BODY, Api, snapshot

# -- hostile payloads ------------------------------------------------------------------------

LUA = ["]] redis.call('FLUSHALL') --", "'); redis.call('DEL', KEYS[1]) --",
       "\"..redis.call('FLUSHDB')..\"", "return redis.call('KEYS', '*')"]
STRINGS = ["\u0000", "a\u0000b", "💥🚀 RTL \u202eevil", "e\u0301\u0301\u0301", "\u2028\u2029",
           "../../etc/passwd", "{}", "}{", "*", "\r\n\r\nevent: job\r\ndata: x", *LUA]


def _deep(levels: int) -> bytes:
    return b'{"command": "x", "payload": ' + b"[" * levels + b"]" * levels + b"}"


def _literal_specs() -> list[dict[str, Any]]:
    """Specs that must be stored exactly as sent."""
    specs: list[dict[str, Any]] = [{"command": "x" * 900_000}]
    for n, text in enumerate(STRINGS):
        specs.append({"command": text, "payload": {text: [text]}, "metadata": {text: text},
                      "required_labels": [text], "unique_key": f"{n}:{text}"})
    specs.append({"command": "x", "payload": [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]})
    specs.append({"command": "x", "payload": {"n": -0.0, "big": 2**63 - 1, "tiny": 5e-324}})
    return specs


def _refused() -> list[tuple[str, Any, bytes | None]]:
    """(path, JSON body or NO_BODY, raw body) that must get a 4xx and write nothing."""
    raw: list[tuple[str, Any, bytes | None]] = [
        ("/api/jobs", NO_BODY, _deep(100_000)),
        ("/api/jobs", NO_BODY, _deep(300)),
        ("/api/jobs", NO_BODY, b'{"command": "x", "priority": 1e309}'),
        ("/api/jobs", NO_BODY, b'{"command": "x", "payload": NaN}'),
        ("/api/jobs", NO_BODY, b'{"command": "\\ud800"}'),
        ("/api/jobs", {"command": "x" * 1_100_000}, None),
        ("/api/jobs", NO_BODY, b'{"command": "x", "priority": 18446744073709551616}'),
        ("/api/jobs", {"command": "x", "lease_ttl_secs": 0}, None),
        ("/api/jobs", {"command": "x", "lease_ttl_secs": 1e12}, None),
        ("/api/jobs", {"command": "x", "required_labels": [""]}, None),
    ]
    for queue in ("../x", "{x}", "a:b", "*", "a b", "q\n", "x" * 65, "", "é"):
        raw.append(("/api/jobs", {"command": "x", "queue": queue}, None))
    return raw


@pytest.fixture
async def hostile_api(make_api: Any, redis: aioredis.Redis, settings: Settings
                      ) -> AsyncIterator[tuple[Api, dict[str, Any]]]:
    api: Api = await make_api(max_body_bytes=1024 * 1024)
    bystander = await api.submit(command="bystander", metadata={"keep": True})
    await api.register("bystander-worker")
    yield api, bystander


@pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning")  # the 1 MB bodies
async def test_hostile_payloads_are_refused_or_stored_literally(
        hostile_api: tuple[Api, dict[str, Any]], redis: aioredis.Redis,
        settings: Settings) -> None:
    api, bystander = hostile_api
    before = await snapshot(redis, settings.namespace)
    for path, body, raw in _refused():
        reply = await api.post(path, body, data=raw,
                               headers={"Content-Type": "application/json"})
        assert 400 <= reply.status < 500, (path, str(body)[:80], raw and raw[:80], reply.text)
    assert await snapshot(redis, settings.namespace) == before  # nothing was written

    stored: list[str] = []
    for spec in _literal_specs():
        reply = await api.post("/api/jobs", spec)
        assert reply.status == 201, (str(spec)[:100], reply.text[:300])
        job = await api.job(reply.body["id"])
        for field, value in spec.items():
            assert job[field] == value, (field, str(value)[:80])
        stored.append(reply.body["id"])

    after = await snapshot(redis, settings.namespace)
    untouched = [k for k in before if not k.endswith((":stats", ":meta", ":index", ":events",
                                                     ":labelsets", "queues"))
                 and ":ready:" not in k]
    for key in untouched:
        assert after.get(key) == before[key], key
    assert len(after) >= len(before)
    assert (await api.job(bystander["id"]))["metadata"] == {"keep": True}
    ns = re.escape(settings.namespace)
    allowed = re.compile(rf"^(\{{{ns}:default\}}:(meta|labelsets|ready:[0-9a-f]{{16}}|delayed|"
                         rf"leases|done|index|stats|events|job:default\.[\w-]{{22}}|"
                         rf"log:default\.[\w-]{{22}}|unique:.*)|\{{{ns}\}}:.+|{ns}:queues)$",
                         re.DOTALL)
    assert all(allowed.match(key) for key in after), [k for k in after if not allowed.match(k)]


async def test_hostile_ids_in_paths_find_nothing_and_write_nothing(
        hostile_api: tuple[Api, dict[str, Any]], redis: aioredis.Redis,
        settings: Settings) -> None:
    api, bystander = hostile_api
    before = await snapshot(redis, settings.namespace)
    tricks = ["..%2F..%2Fetc%2Fpasswd", "default.%7Bx%7D", "default.*", "%00",
              "default.AAAAAAAAAAAAAAAAAAAAAA%00", bystander["id"] + "%0A", "%E2%80%AE",
              bystander["id"] + ".x", "default." + "A" * 500]
    for trick in tricks:
        for method, path in (("GET", f"/api/jobs/{trick}"), ("POST", f"/api/jobs/{trick}/cancel"),
                             ("GET", f"/api/jobs/{trick}/logs"),
                             ("POST", f"/api/jobs/{trick}/heartbeat"),
                             ("POST", f"/api/jobs/{trick}/complete"),
                             ("GET", f"/api/workers/{trick}"),
                             ("GET", f"/api/queues/{trick}")):
            reply = await api.call(method, path)
            assert 400 <= reply.status < 500 or (
                reply.status == 200 and path.startswith("/api/queues/")), (path, reply.text)
    for after in ("garbage", "-1", "1-2-3", "99999999999999999999-0"):
        reply = await api.get(f"/api/jobs/{bystander['id']}/logs", params={"after": after})
        assert reply.status in (200, 400), (after, reply.text)
        if reply.status == 200:
            assert reply.body == []
    assert await snapshot(redis, settings.namespace) == before
    assert orjson.loads(orjson.dumps(bystander))["status"] == "queued"
