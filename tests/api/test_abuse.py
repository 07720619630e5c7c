"""Auth abuse (research/reliability.md 4E) beyond test_tokens, test_errors and test_guard: one 401
for every kind of bad credential on every route, no role reaching a route it is not granted
(no escalation through token creation), /metrics leaking no secret or id, header and body size
limits, and scripts that are constant files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from leasehold.api.server.routing import REGISTRATION, router
from leasehold.scheduler.config import Settings
from leasehold.scheduler.scripts import Scripts, script_names, source
from tests.api.conftest import MakeApi
from tests.api.harness import ADMIN, Api, snapshot

ROLE_TOKENS = ("submitter", "viewer", "metrics")
_PARAM = re.compile(r"{(\w+)}")


def _concrete(path: str) -> str:
    return _PARAM.sub("x", path)


def _body_less(reply_text: str) -> str:
    """A reply without the parts that differ per request: its id, and the worker id a
    registration attempt generated."""
    return re.sub(r'"(request_id|worker_id)":"[^"]*"', "", reply_text)


async def _api(make_api: MakeApi) -> Api:
    return await make_api(auth_failures_per_minute=1_000_000)  # this file sends many 401s


async def test_every_protected_route_answers_bad_credentials_alike(make_api: MakeApi) -> None:
    api = await _api(make_api)
    token_id, deleted = await api.api_token("viewer")
    assert (await api.delete(f"/api/tokens/{token_id}")).status == 200
    regtoken = await api.registration_token()
    missing: list[dict[str, str]] = [{}, {"Authorization": "Basic YWRtaW46YWRtaW4="},
                                     {"Authorization": "Bearer "}, {"Authorization": "Bearer"},
                                     {"Authorization": ADMIN}, {"X-Worker-ID": "w1"}]
    invalid: list[dict[str, str]] = [
        {"Authorization": f"Bearer {token}"}
        for token in ("lha_guess", ADMIN + "x", ADMIN.upper(), deleted, "\u00e9" * 10)]
    invalid.append({"X-Worker-ID": "w1", "X-Worker-Token": "lhw_guess"})
    for spec in router.specs:
        if not spec.roles or spec.sse:
            continue  # public routes; SSE routes also take tickets (test_log_routes)
        path = _concrete(spec.path)
        body: Any = {"labels": []} if REGISTRATION in spec.roles else {}
        for group in (missing, invalid):
            bodies = set()
            for headers in group:
                reply = await api.call(spec.method, path, body, token=None, headers=headers)
                assert reply.status == 401, (spec.method, path, headers, reply.text)
                assert reply.headers.get("WWW-Authenticate") == "Bearer"
                for value in headers.values():
                    assert len(value) < 8 or value not in reply.text  # nothing echoed back
                bodies.add(_body_less(reply.text))
            assert len(bodies) == 1, (spec.method, path, bodies)  # no oracle between cases
        if REGISTRATION not in spec.roles:  # a registration token is no credential elsewhere
            reply = await api.call(spec.method, path, token=regtoken)
            assert reply.status == 401, (spec.method, path, reply.text)


async def test_no_role_reaches_a_route_it_is_not_granted(
        make_api: MakeApi, redis: aioredis.Redis, settings: Settings) -> None:
    api = await _api(make_api)
    tokens = {role: (await api.api_token(role))[1] for role in ROLE_TOKENS}
    tokens["worker"] = str((await api.register("w-abuse")).token)
    job = await api.submit(command="x")
    before = await snapshot(redis, settings.namespace)
    refused = 0
    for spec in router.specs:
        if not spec.roles:
            continue
        path = _concrete(spec.path).replace("/x/", f"/{job['id']}/", 1)
        for role, token in tokens.items():
            if role in spec.roles:
                continue
            body: Any = {"role": "admin", "name": "escalate"} if spec.path == "/api/tokens" \
                else {}
            reply = await api.call(spec.method, path, body, token=token)
            assert reply.status == 403, (role, spec.method, path, reply.text)
            assert reply.body["error"] == "forbidden"
            refused += 1
    assert refused > 100
    # nothing changed: no token minted, no job touched, no worker revoked
    assert await snapshot(redis, settings.namespace) == before
    # and a token a non-admin could not mint cannot be minted by an admin either for a worker
    escalate = await api.post("/api/tokens", {"role": "worker", "name": "w"})
    assert escalate.status == 400


async def test_metrics_need_their_own_role_and_show_no_secret_or_id(make_api: MakeApi) -> None:
    api = await _api(make_api)
    _, metrics = await api.api_token("metrics", "prometheus")
    _, submitter = await api.api_token("submitter", "ci")
    worker = await api.register("w-metrics")
    job = await api.submit(command="x", metadata={"secret": "hunter2"})
    lease = (await worker.claim())["lease"]["lease_id"]
    await worker.post(f"/api/jobs/{lease}/complete", {"outputs": {"password": "hunter2"}})
    await api.get("/api/jobs", token="lha_wrong-guess")  # a failed auth is counted, not shown

    assert (await api.get("/metrics", token=None)).status == 401
    for token in (submitter, worker.token):
        assert (await api.get("/metrics", token=token)).status == 403
    assert (await api.get("/api/jobs", token=metrics)).status == 403  # metrics reads nothing
    scrape = await api.get("/metrics", token=metrics)
    assert scrape.status == 200 and "leasehold_jobs_submitted_total" in scrape.text
    for secret in (ADMIN, metrics, submitter, str(worker.token), "lha_wrong-guess", job["id"],
                   lease, "w-metrics", "hunter2", "redis://"):
        assert secret not in scrape.text, secret
    assert "Traceback" not in scrape.text


async def test_oversized_headers_and_bodies_are_refused(make_api: MakeApi) -> None:
    api = await make_api(max_body_bytes=4096)
    client = api.client
    for headers in ({"X-Padding": "a" * 9000}, {"Authorization": "Bearer " + "a" * 9000},
                    {f"X-H{n}": "v" for n in range(200)} | {"X-Big": "b" * 8000}):
        async with client.get("/api/queues", headers=headers) as resp:
            assert resp.status in (400, 431), resp.status
            assert "Traceback" not in await resp.text()
    async with client.get("/api/jobs/" + "a" * 9000,
                          headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        assert resp.status in (400, 414), resp.status

    async def chunked() -> Any:  # no Content-Length: the limit still holds
        for _ in range(10):
            yield b'{"command": "' + b"x" * 1000
    async with client.post("/api/jobs", data=chunked(),
                           headers={"Authorization": f"Bearer {ADMIN}",
                                    "Content-Type": "application/json"}) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"] == "body_too_large"
    assert (await api.get("/api/jobs")).body["jobs"] == []


def test_scripts_are_constant_files_and_nothing_evaluates_built_text() -> None:
    """S13, statically: every script is a file of lua/ loaded as is; no EVAL of other text."""
    loaded = {script.script for script in Scripts(aioredis.Redis()).all()}
    assert loaded == {source(name) for name in script_names()}
    root = Path(__file__).resolve().parents[2]
    for module in [*(root / "scheduler").glob("*.py"), *(root / "api").glob("*.py")]:
        text = module.read_text()
        assert not re.search(r"\.eval\(", text), module  # EVAL takes script text: never used
        if "register_script(" in text or ".evalsha(" in text:
            assert module.name == "scripts.py", module  # the one reader of lua/
