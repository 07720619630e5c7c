"""Per-queue tokens, rate limits, verification and schedules over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.harness import Api


async def _limited(api: Api, role: str, queues: list[str]) -> Api:
    reply = await api.post("/api/tokens", {"role": role, "name": "scoped", "queues": queues})
    assert reply.status == 201, reply.text
    return api.as_(reply.body["token"])


async def _forbidden(reply: Any) -> None:
    assert reply.status == 403, reply.text
    assert reply.body["error"] == "queue_forbidden"


async def test_a_token_limited_to_a_gets_403_for_queue_b_on_every_route(api: Api) -> None:
    in_b = await api.submit(queue="b", command="x")
    in_a = await api.submit(queue="a", command="x")
    created = await api.post("/api/workflows", {"name": "wf-b", "queue": "b",
                                                "jobs": [{"id": "one", "command": "true"}]})
    assert created.status == 201, created.text
    wf = "/api/workflows/" + created.body["id"]
    submitter = await _limited(api, "submitter", ["a"])
    job = f"/api/jobs/{in_b['id']}"
    await _forbidden(await submitter.post("/api/jobs", {"queue": "b", "command": "x"}))
    both = [{"queue": "a", "command": "x"}, {"queue": "b", "command": "x"}]
    await _forbidden(await submitter.post("/api/jobs/bulk", {"jobs": both}))
    await _forbidden(await submitter.get(job))
    await _forbidden(await submitter.get("/api/jobs", params={"queue": "b"}))
    await _forbidden(await submitter.get(job + "/logs"))
    await _forbidden(await submitter.get(job + "/logs/stream"))
    await _forbidden(await submitter.get("/api/events", params={"queue": "b"}))
    await _forbidden(await submitter.post(job + "/cancel"))
    await _forbidden(await submitter.get("/api/queues/b"))
    await _forbidden(await submitter.post(wf + "/run"))
    await _forbidden(await submitter.get(wf + "/status"))
    await _forbidden(await submitter.get(wf + "/runs"))
    await _forbidden(await submitter.post("/api/schedules", {
        "id": "s", "every_secs": 60, "job": {"queue": "b", "command": "x"}}))
    # queue a works, and lists show only queue a
    assert (await submitter.post("/api/jobs", {"queue": "a", "command": "x"})).status == 201
    assert (await submitter.get(f"/api/jobs/{in_a['id']}")).status == 200
    queues = await submitter.get("/api/queues")
    assert [q["queue"] for q in queues.body] == ["a"]
    workflows = await submitter.get("/api/workflows")
    assert workflows.status == 200 and workflows.body == []
    admin_scoped = await _limited(api, "admin", ["a"])
    await _forbidden(await admin_scoped.post(job + "/retry"))


async def test_workers_of_a_limited_registration_token_claim_only_in_its_queues(
        api: Api) -> None:
    reply = await api.post("/api/registration-tokens", {"queues": ["a"]})
    assert reply.status == 201
    registered = await api.post("/api/workers/register", {"worker_id": "wa", "labels": []},
                                token=reply.body["token"])
    assert registered.status == 201, registered.text
    worker = api.as_(registered.body["worker_token"])
    await api.submit(queue="b")
    await api.submit(queue="a")
    await _forbidden(await worker.post("/api/jobs/claim", {"queues": ["b"]}))
    await _forbidden(await worker.post("/api/jobs/claim", {}))  # "default" is not its queue
    got = await worker.post("/api/jobs/claim", {"queues": ["a"]})
    assert got.status == 200 and got.body["job"]["queue"] == "a"


async def test_submit_over_the_rate_gets_429_with_retry_after(api: Api) -> None:
    put = await api.put("/api/queues/rq", {"submit_rate": {"limit": 2, "per_secs": 30},
                                           "rate_limit": {"limit": 5, "per_secs": 1}})
    assert put.status == 200, put.text
    assert put.body["submit_rate"] == {"limit": 2, "per_secs": 30}
    assert put.body["claim_rate"] == put.body["rate_limit"] == {"limit": 5, "per_secs": 1}
    await api.submit(queue="rq")
    await api.submit(queue="rq")
    over = await api.post("/api/jobs", {"queue": "rq", "command": "x"})
    assert over.status == 429 and over.body["error"] == "rate_limited"
    assert 1 <= int(over.headers["Retry-After"]) <= 30
    metrics = await api.get("/metrics")
    assert "leasehold_submit_rate_limited_total{queue=\"rq\"} 1.0" in metrics.text


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/queues/q", {"submit_rate": {"limit": -1, "per_secs": 1}}, "submit_rate"),
    ("/api/queues/q", {"claim_rate": {"limit": 1, "per_secs": 0}}, "claim_rate"),
    ("/api/jobs", {"verification": {"count": 0}}, "verification"),
    ("/api/schedules", {"id": "s", "cron": "61 * * * *", "job": {}}, "cron"),
    ("/api/schedules", {"id": "s", "every_secs": 5, "timezone": "No/Where", "job": {}},
     "timezone"),
    ("/api/tokens", {"role": "viewer", "name": "n", "queues": ["bad queue!"]}, "queues"),
])
async def test_bad_policy_input_is_400_naming_the_field(api: Api, path: str,
                                                        body: dict[str, Any], field: str) -> None:
    method = api.put if path.startswith("/api/queues") else api.post
    reply = await method(path, body)
    assert reply.status == 400, reply.text
    assert field in str(reply.body["details"][0]["loc"])


async def test_verification_over_http(api: Api) -> None:
    job = await api.submit(verification={"count": 2}, command="hash")
    assert job["verification"] == {"count": 2, "max_votes": 5}
    for worker in ("v1", "v2"):
        claim = await api.claim(worker)
        assert claim["job"]["id"] == job["id"]
        assert await api.claim(worker) is None  # never the same job twice
        done = await api.post(f"/api/jobs/{claim['lease']['lease_id']}/complete",
                              {"outputs": {"w": worker}, "verification": "h1"})
        assert done.status == 200, done.text
    final = await api.job(job["id"])
    assert final["status"] == "success" and final["outputs"] == {"w": "v2"}


async def test_schedule_routes(api: Api) -> None:
    body = {"id": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris",
            "job": {"queue": "reports", "command": "report", "payload": {"n": 1.50}}}
    created = await api.post("/api/schedules", body)
    assert created.status == 201, created.text
    assert created.body["job"]["payload"] == {"n": 1.5} and created.body["last_run_ms"] is None
    assert (await api.post("/api/schedules", body)).status == 409
    listed = await api.get("/api/schedules")
    assert [s["id"] for s in listed.body] == ["nightly"]
    one = await api.get("/api/schedules/nightly")
    assert one.status == 200 and one.body["cron"] == "0 3 * * *"
    assert (await api.delete("/api/schedules/nightly")).status == 200
    assert (await api.get("/api/schedules/nightly")).status == 404
    scoped = await _limited(api, "submitter", ["other"])
    await api.post("/api/schedules", body)
    assert (await scoped.get("/api/schedules")).body == []
    await _forbidden(await scoped.delete("/api/schedules/nightly"))
