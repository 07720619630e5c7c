"""Bad input (research/reliability.md 4D): schemathesis against /openapi.json as each role, and a
set of hostile payloads that must be refused or stored literally without touching other keys."""

from __future__ import annotations

import asyncio
import re
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from leasehold.api.app import create_app
from leasehold.scheduler.config import Settings
from tests.api.harness import ADMIN, NO_BODY, Api, snapshot
from tests.redis_server import free_port

pytestmark = pytest.mark.timeout(180)  # the fuzzer walks every route, adapters too
# endless SSE responses, the WebSocket, and Andera's task (it waits for a worker to finish it)
SKIPPED_PATHS = re.compile(r"/stream$|^/api/events$|/task-stream$|^/compat/andera/task$")


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[str]:
    """The app on a real port (schemathesis speaks HTTP through requests)."""
    app = create_app(settings.model_copy(update={
        "admin_token": ADMIN, "auth": True, "auth_failures_per_minute": 1_000_000,
        "secrets_key": "q9uG3O1kV6Q0b3nA2cM3dY1wJ8pVb5rZ0hN4tL7sE2k="}))
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _tokens(base: str) -> dict[str, str]:
    """A token of each role schemathesis runs as."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession(base, headers=headers) as http:
        async with http.post("/api/tokens", json={"role": "viewer", "name": "st"}) as resp:
            viewer = (await resp.json())["token"]
        async with http.post("/api/registration-tokens", json={"ttl_secs": 60}) as resp:
            regtoken = (await resp.json())["token"]
        async with http.post("/api/workers/register", json={"worker_id": "st-worker"},
                             headers={"Authorization": f"Bearer {regtoken}"}) as resp:
            worker = (await resp.json())["worker_token"]
    return {"admin": ADMIN, "viewer": viewer, "worker": worker}


def _fuzzer(operation: Any, mode: Any, examples: int, base: str, headers: dict[str, str],
            session: Any) -> Callable[[], None]:
    """A hypothesis test that sends ``examples`` generated requests to one operation."""
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        if isinstance(case.query, dict):
            case.query.pop("wait_secs", None)  # no long polls or sync waits
        if isinstance(case.body, dict) and "wait_secs" in case.body:
            case.body["wait_secs"] = 0
        result = case.body.get("result") if isinstance(case.body, dict) else None
        if isinstance(result, dict) and result.get("mode") in ("sync", "stream"):
            result.update(mode="sync", timeout_secs=0.1)  # no waits for a job nobody runs
        case.call_and_validate(base_url=base, session=session, headers=headers, checks=checks,
                               timeout=10)

    return cast(Callable[[], None], fuzz)


def _fuzz(base: str, tokens: dict[str, str]) -> list[str]:
    """Every operation, as every role (positive data), and as admin with negative data too;
    returns the failures schemathesis found (empty when none)."""
    import requests
    import schemathesis
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.core.result import Ok

    schema = schemathesis.openapi.from_url(base + "/openapi.json")
    runs = [("admin", GenerationMode.POSITIVE, 20), ("admin", GenerationMode.NEGATIVE, 15),
            ("viewer", GenerationMode.POSITIVE, 6), ("worker", GenerationMode.POSITIVE, 6)]
    failures: list[str] = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()
            if SKIPPED_PATHS.search(operation.path):
                continue
            for role, mode, examples in runs:
                headers = {"Authorization": f"Bearer {tokens[role]}"}
                try:
                    _fuzzer(operation, mode, examples, base, headers, session)()
                except Unsatisfiable:
                    pass  # nothing to negate (e.g. /healthz takes no input)
                except Exception as exc:
                    failures.append(f"{operation.label} as {role} ({mode.value}): {exc}")
    return failures


@pytest.mark.timeout(600)  # hundreds of generated requests; slow on a busy machine
async def test_schemathesis_finds_no_server_error_or_schema_violation(served: str) -> None:
    tokens = await _tokens(served)

    def run() -> list[str]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fuzzer's own deprecation notices
            return _fuzz(served, tokens)

    failures = await asyncio.to_thread(run)
    assert not failures, "\n\n".join(failures)


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
