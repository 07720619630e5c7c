"""Tokens: never stored or echoed raw, one-time registration, instant revocation, header auth."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog
from structlog.testing import capture_logs

from leasehold.api.cli import main as cli
from leasehold.scheduler.config import Settings
from tests.api.harness import ADMIN, Api, snapshot

LogEntries = list[MutableMapping[str, Any]]


@pytest.fixture
def captured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[LogEntries]:
    """Every structlog event of the service; module loggers are swapped for fresh lazy proxies
    so a logger cached under an earlier configuration cannot bypass the capture."""
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in ("api", "scheduler") and hasattr(module, "log"):
            monkeypatch.setattr(module, "log", structlog.get_logger(name))
    with capture_logs() as entries:
        yield entries


async def test_raw_tokens_never_reach_redis_logs_or_later_replies(
    api: Api, redis: aioredis.Redis, settings: Settings, captured_logs: LogEntries,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    _, submitter = await api.api_token("submitter", "ci")
    regtoken = await api.registration_token()
    registered = await api.post("/api/workers/register", {"worker_id": "wt", "labels": ["x"]},
                                token=regtoken)
    worker_token = registered.body["worker_token"]
    raw = {"admin": ADMIN, "submitter": submitter, "registration": regtoken,
           "worker": worker_token}
    issued = len(api.transcript)

    job = (await api.post("/api/jobs", {"command": "x", "required_labels": ["x"]},
                          token=submitter)).body
    worker = api.as_(worker_token)
    lease = (await worker.claim(labels=["x"]))["lease"]
    await worker.post(f"/api/jobs/{lease['lease_id']}/logs", {"chunks": [{"data": "hello"}]})
    await worker.post(f"/api/jobs/{lease['lease_id']}/heartbeat", {"progress": 10})
    await worker.post("/api/workers/heartbeat", headers={"X-Worker-ID": "wt"})
    await worker.post(f"/api/jobs/{lease['lease_id']}/complete")
    refusals = [
        await api.post("/api/workers/register", {"worker_id": "again"}, token=regtoken),
        await worker.post("/api/tokens", {"role": "admin", "name": "x"}),
        await worker.get("/api/workers/wt", headers={"X-Worker-ID": "other"}),
        await api.get("/api/jobs", token=submitter + "x"),
        await api.post("/api/jobs", {"command": "x", "token": submitter}, token=submitter),
    ]
    assert [r.status for r in refusals] == [401, 403, 401, 401, 400]
    views = [await api.get("/api/workers/wt"), await api.get("/api/workers"),
             await api.get(f"/api/jobs/{job['id']}"), await api.get(f"/api/jobs/{job['id']}/logs"),
             await api.get("/api/queues")]
    assert all(v.status == 200 for v in views)

    later = api.transcript[issued:]
    for kind, token in raw.items():
        for reply in later:
            assert token not in reply.text, (kind, reply.text)
            assert all(token not in value for value in reply.headers.values()), kind
        stored = repr(await snapshot(redis, settings.namespace))
        assert token not in stored, kind
        assert token not in repr(captured_logs), kind
        assert token not in caplog.text, kind
    stored = repr(await snapshot(redis, settings.namespace))
    for kind in ("submitter", "registration", "worker"):
        if kind != "registration":  # a used-up registration token is deleted
            assert hashlib.sha256(raw[kind].encode()).hexdigest() in stored, kind
    assert sum(1 for e in captured_logs if e.get("event") == "request") >= len(later)


async def test_registration_token_registers_exactly_once_under_concurrency(api: Api) -> None:
    regtoken = await api.registration_token(uses=1)
    replies = await asyncio.gather(*(
        api.post("/api/workers/register", {"worker_id": f"racer-{i}"}, token=regtoken)
        for i in range(10)))
    statuses = sorted(r.status for r in replies)
    assert statuses == [201] + [401] * 9
    assert {r.body["error"] for r in replies if r.status == 401} == {"unauthorized"}
    workers = (await api.get("/api/workers")).body
    assert len(workers) == 1 and workers[0]["worker_id"].startswith("racer-")

    three = await api.registration_token(uses=3)
    results = [(await api.post("/api/workers/register", {"worker_id": f"m{i}"}, token=three))
               .status for i in range(4)]
    assert results == [201, 201, 201, 401]


async def test_expired_registration_token_is_refused(api: Api) -> None:
    regtoken = await api.registration_token(ttl_secs=0.2)
    await asyncio.sleep(0.35)
    reply = await api.post("/api/workers/register", {"worker_id": "late"}, token=regtoken)
    assert reply.status == 401 and reply.body["error"] == "unauthorized"
    assert (await api.get("/api/workers")).body == []


async def test_revoking_a_worker_is_immediate_and_releases_its_leases(api: Api) -> None:
    worker = await api.register("doomed")
    job = await api.submit(command="long", retry_policy={"max_retries": 0})
    lease = (await worker.claim())["lease"]
    assert (await api.job(job["id"]))["status"] == "running"

    revoked = await api.delete("/api/workers/doomed")
    assert revoked.status == 200
    assert revoked.body == {"deleted": True, "leases_released": 1}
    refused = await worker.post(f"/api/jobs/{lease['lease_id']}/heartbeat")
    assert refused.status == 401 and refused.body["error"] == "unauthorized"
    assert (await worker.claim_reply()).status == 401
    assert (await api.get("/api/workers/doomed")).status == 404

    back = await api.job(job["id"])
    assert back["status"] == "queued" and back["attempt"] == 0
    successor = await api.register("successor")
    again = await successor.claim()
    assert again["job"]["id"] == job["id"] and again["job"]["attempt"] == 0
    stale = await api.post(f"/api/jobs/{lease['lease_id']}/complete")
    assert stale.status == 409 and stale.body["error"] == "lease_superseded"


async def test_worker_headers_work_in_place_of_bearer(api: Api) -> None:
    token = (await api.register("hw")).token
    assert token is not None
    by_headers = api.as_(None, {"X-Worker-ID": "hw", "X-Worker-Token": token})
    await api.submit(command="x")
    claimed = await by_headers.claim()
    assert claimed["lease"]["worker_id"] == "hw"
    beat = await by_headers.post("/api/workers/heartbeat", {"running_jobs": 1})
    assert beat.status == 200 and beat.body == {"drain": False, "worker_id": "hw"}
    done = await by_headers.post(f"/api/jobs/{claimed['lease']['lease_id']}/complete")
    assert done.status == 200

    for headers in ({"X-Worker-ID": "someone-else", "X-Worker-Token": token},
                    {"X-Worker-ID": "hw", "X-Worker-Token": token + "x"}):
        wrong = await api.post("/api/workers/heartbeat", headers=headers, token=None)
        assert wrong.status == 401 and wrong.body["error"] == "unauthorized"
    mismatched_bearer = await api.as_(token).post("/api/workers/heartbeat",
                                                  headers={"X-Worker-ID": "someone-else"})
    assert mismatched_bearer.status == 401


def _no_logging_setup(*args: object, **kwargs: object) -> None:
    pass


def test_serve_refuses_no_auth_on_a_public_address(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("LEASEHOLD_ALLOW_INSECURE", "LEASEHOLD_AUTH", "LEASEHOLD_HOST"):
        monkeypatch.delenv(name, raising=False)
    # The refusal comes after logging is set up; keep the session's structlog config untouched.
    monkeypatch.setattr(cli, "configure_logging", _no_logging_setup)
    code = cli.main(["serve", "--no-auth", "--host", "0.0.0.0", "--port", "0"])
    assert code == 2
    assert "refusing to run without auth on 0.0.0.0" in capsys.readouterr().err
