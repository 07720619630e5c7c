"""A seed 003 client, unchanged, against auth off; drain; sync submit; dedup; job pages."""

from __future__ import annotations

import asyncio

from tests.api.harness import Api

JOB_FIELDS = {"job_id", "command", "required_labels", "retry_policy", "attempt",
              "upstream_outputs", "enqueued_at_ms", "delayed_until_ms"}
LEASE_FIELDS = {"lease_id", "job_id", "worker_id", "ttl_secs", "granted_at_ms"}


async def test_seed_003_worker_flow_with_auth_off(open_api: Api) -> None:
    reply = await open_api.post("/api/workers/register", {"worker_id": "w1", "labels": ["docker"]})
    assert reply.status == 201, reply.text
    assert reply.body["worker_id"] == "w1"
    assert set(reply.body["config"]) == {"heartbeat_interval_secs", "lease_ttl_secs"}

    job = await open_api.submit(command="make test", required_labels=["docker"])
    claim = {"worker_id": "w1", "labels": ["docker"], "lease_ttl_secs": 30}
    reply = await open_api.post("/api/jobs/claim", claim)
    assert reply.status == 200, reply.text
    assert set(reply.body["job"]) >= JOB_FIELDS and set(reply.body["lease"]) >= LEASE_FIELDS
    assert reply.body["job"]["job_id"] == job["id"]
    assert reply.body["job"]["command"] == "make test"
    assert reply.body["job"]["required_labels"] == ["docker"]
    assert reply.body["job"]["attempt"] == 0
    lease = reply.body["lease"]
    assert lease["job_id"] == job["id"] and lease["worker_id"] == "w1"
    assert lease["ttl_secs"] == 30

    again = await open_api.post("/api/jobs/claim", claim)
    assert again.status == 200 and again.text == "null" and again.body is None

    beat = await open_api.post(f"/api/jobs/{lease['lease_id']}/heartbeat")
    assert beat.status == 200, beat.text
    assert beat.body["cancelled"] is False
    assert beat.body["lease"]["expires_at_ms"] >= lease["granted_at_ms"] + 30_000

    done = await open_api.post(f"/api/jobs/{lease['lease_id']}/complete",
                               {"outputs": {"artifact": "build.tar"}})
    assert done.status == 200 and done.body == {"ok": True}
    finished = await open_api.job(job["id"])
    assert finished["status"] == "success" and finished["outputs"] == {"artifact": "build.tar"}

    second = await open_api.submit(command="flaky", required_labels=["docker"],
                                   retry_policy={"max_retries": 2})
    claimed = (await open_api.post("/api/jobs/claim", claim)).body
    assert claimed["job"]["id"] == second["id"]
    failed = await open_api.post(f"/api/jobs/{claimed['lease']['lease_id']}/fail",
                                 {"error": "x", "retryable": True})
    assert failed.status == 200, failed.text
    assert failed.body["will_retry"] is True and isinstance(failed.body["retry_at_ms"], int)
    assert (await open_api.job(second["id"]))["status"] == "queued"

    lost = await open_api.post(f"/api/jobs/{lease['lease_id']}/heartbeat")
    assert lost.status == 409 and lost.body["error"] == "job_finished", lost.text
    for verb in ("heartbeat", "complete"):
        lost = await open_api.post(f"/api/jobs/{claimed['lease']['lease_id']}/{verb}")
        assert lost.status == 409 and lost.body["error"] == "job_finished", lost.text


async def test_drain_stops_claims_and_undrain_restores(api: Api) -> None:
    worker = await api.register("wd", ["linux"])
    job = await api.submit(command="true")

    drained = await api.post("/api/workers/wd/drain")
    assert drained.status == 200 and drained.body["status"] == "draining"
    beat = await worker.post("/api/workers/wd/heartbeat", {"running_jobs": 0})
    assert beat.status == 200 and beat.body["drain"] is True
    assert await worker.claim() is None
    assert (await api.get("/api/workers/wd")).body["status"] == "draining"

    undrained = await api.post("/api/workers/wd/undrain")
    assert undrained.status == 200 and undrained.body["status"] == "idle"
    beat = await worker.post("/api/workers/wd/heartbeat")
    assert beat.status == 200 and beat.body["drain"] is False
    claimed = await worker.claim()
    assert claimed["job"]["id"] == job["id"] and claimed["lease"]["worker_id"] == "wd"


async def test_drain_applies_to_claims_made_without_a_worker_token(open_api: Api) -> None:
    await open_api.post("/api/workers/register", {"worker_id": "w1", "labels": []})
    await open_api.submit(command="true")
    assert (await open_api.post("/api/workers/w1/drain")).status == 200
    assert (await open_api.post("/api/workers/w1/heartbeat")).body["drain"] is True
    assert await open_api.claim("w1") is None
    assert await open_api.claim("w1", max_jobs=5) == {"claims": []}
    assert (await open_api.post("/api/workers/w1/undrain")).status == 200
    assert (await open_api.claim("w1"))["lease"]["worker_id"] == "w1"


async def test_sync_submit_returns_the_terminal_job(api: Api) -> None:
    worker = await api.register("ws")

    async def work() -> None:
        claimed = await worker.claim(wait_secs=5)
        assert claimed is not None
        reply = await worker.post(f"/api/jobs/{claimed['lease']['lease_id']}/complete",
                                  {"outputs": {"answer": 42}})
        assert reply.status == 200

    worker_task = asyncio.create_task(work())
    reply = await api.post("/api/jobs", {"command": "compute"}, params={"wait_secs": "5"})
    await worker_task
    assert reply.status == 201, reply.text
    assert reply.body["status"] == "success" and reply.body["outputs"] == {"answer": 42}
    assert reply.body["deduplicated"] is False


async def test_sync_submit_returns_the_queued_job_when_the_wait_runs_out(api: Api) -> None:
    reply = await api.post("/api/jobs", {"command": "x"}, params={"wait_secs": "0.2"})
    assert reply.status == 201 and reply.body["status"] == "queued"
    bad = await api.post("/api/jobs", {"command": "x"}, params={"wait_secs": "61"})
    assert bad.status == 400 and "wait_secs" in bad.body["message"]


async def test_second_submit_with_the_same_unique_key_is_deduplicated(api: Api) -> None:
    first = await api.post("/api/jobs", {"command": "a", "unique_key": "nightly"})
    assert first.status == 201 and first.body["deduplicated"] is False
    second = await api.post("/api/jobs", {"command": "b", "unique_key": "nightly"})
    assert second.status == 200, second.text
    assert second.body["deduplicated"] is True and second.body["id"] == first.body["id"]
    assert second.body["command"] == "a"
    other_queue = await api.post("/api/jobs",
                                 {"queue": "q2", "command": "a", "unique_key": "nightly"})
    assert other_queue.status == 201 and other_queue.body["id"] != first.body["id"]


async def _walk(api: Api, order: str) -> tuple[list[str], int]:
    """Every job id of the default queue, three per page; and the number of pages."""
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "3", "order": order, **({"cursor": cursor} if cursor else {})}
        reply = await api.get("/api/jobs", params=params)
        assert reply.status == 200, reply.text
        assert len(reply.body["jobs"]) <= 3
        seen += [job["id"] for job in reply.body["jobs"]]
        cursor = reply.body["next_cursor"]
        pages += 1
        if cursor is None:
            return seen, pages
        assert pages < 10


async def test_job_pages_walk_every_job_once_in_enqueue_order(api: Api) -> None:
    ids = [(await api.submit(command=f"job {i}"))["id"] for i in range(7)]
    assert await _walk(api, "asc") == (ids, 3)
    assert await _walk(api, "desc") == (ids[::-1], 3)

    for _ in range(2):
        claimed = await api.claim("w1")
        await api.post(f"/api/jobs/{claimed['lease']['lease_id']}/complete")
    done = await api.get("/api/jobs", params={"status": "success"})
    assert [job["id"] for job in done.body["jobs"]] == ids[:2]
    queued = await api.get("/api/jobs", params={"status": "queued", "limit": "1000"})
    assert [job["id"] for job in queued.body["jobs"]] == ids[2:]
    assert (await api.get("/api/jobs", params={"queue": "other"})).body == {
        "jobs": [], "next_cursor": None}
    bad = await api.get("/api/jobs", params={"status": "done"})
    assert bad.status == 400 and bad.body["error"] == "invalid_argument"
