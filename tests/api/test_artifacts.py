"""Artifacts over HTTP: the lease holder writes, readers list and download byte-exact with an
ETag, other workers are refused, limits refuse without storing, retention purges them."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import redis.asyncio as aioredis

from leasehold.api.server.appkeys import SERVICES, SETTINGS
from tests.api.conftest import MakeApi
from tests.api.harness import Api

BLOB = os.urandom(700_000) + b"\x00\xff" * 10  # several chunks, any bytes


async def _running_job(api: Api, worker_id: str) -> tuple[Api, dict[str, Any]]:
    worker = await api.register(worker_id)
    job = await api.submit(command="build", queue="art")
    claim = await worker.claim(worker_id, queues=["art"])
    assert claim["job"]["id"] == job["id"]
    return worker, claim


async def test_lease_holder_uploads_and_a_viewer_downloads_byte_exact(api: Api) -> None:
    worker, claim = await _running_job(api, "w-art")
    job_id = claim["job"]["id"]
    put = await worker.put(f"/api/jobs/{job_id}/artifacts/plan.bin", data=BLOB,
                           headers={"Content-Type": "application/x-plan"})
    assert put.status == 201, put.text
    digest = hashlib.sha256(BLOB).hexdigest()
    assert put.body["sha256"] == digest and put.body["size"] == len(BLOB)

    _, viewer_token = await api.api_token("viewer")
    viewer = api.as_(viewer_token)
    listed = await viewer.get(f"/api/jobs/{job_id}/artifacts")
    assert listed.status == 200
    assert [(a["name"], a["size"], a["content_type"], a["sha256"]) for a in listed.body] == [
        ("plan.bin", len(BLOB), "application/x-plan", digest)]
    async with api.client.get(f"/api/jobs/{job_id}/artifacts/plan.bin",
                              headers={"Authorization": f"Bearer {viewer_token}"}) as resp:
        assert resp.status == 200
        assert resp.headers["ETag"] == f'"{digest}"'
        assert resp.headers["Content-Type"] == "application/x-plan"
        assert resp.headers["Content-Security-Policy"] == "sandbox"  # stored bytes never run
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert await resp.read() == BLOB
    again = await viewer.get(f"/api/jobs/{job_id}/artifacts/plan.bin",
                             headers={"If-None-Match": f'"{digest}"'})
    assert again.status == 304

    # the same name again replaces it, and the quota counts only the newest bytes
    put = await worker.put(f"/api/jobs/{job_id}/artifacts/plan.bin", data=b"v2",
                           headers={"Content-Type": "text/plain"})
    assert put.status == 201
    got = await viewer.get(f"/api/jobs/{job_id}/artifacts/plan.bin")
    assert got.text == "v2"
    redis = api.app[SERVICES].redis
    assert await redis.get("{" + api.app[SETTINGS].namespace + ":art}:artbytes") == "2"


async def test_only_the_lease_holder_or_an_admin_writes(api: Api) -> None:
    _, claim = await _running_job(api, "w-holder")
    job_id = claim["job"]["id"]
    other = await api.register("w-other")
    refused = await other.put(f"/api/jobs/{job_id}/artifacts/x", data=b"nope")
    assert refused.status == 403
    assert (await other.get(f"/api/jobs/{job_id}/artifacts")).status == 403
    assert (await api.get(f"/api/jobs/{job_id}/artifacts")).body == []
    _, viewer = await api.api_token("viewer")
    assert (await api.put(f"/api/jobs/{job_id}/artifacts/x", data=b"v",
                          token=viewer)).status == 403
    admin = await api.put(f"/api/jobs/{job_id}/artifacts/x", data=b"by admin")
    assert admin.status == 201
    assert (await api.put(f"/api/jobs/{job_id}/artifacts/bad%2Fname", data=b"v")).status in (
        400, 404)
    assert (await api.put(f"/api/jobs/{job_id}/artifacts/{'n' * 129}", data=b"v")).status == 400
    assert (await api.get(f"/api/jobs/{job_id}/artifacts/missing")).status == 404


async def test_a_finished_lease_no_longer_writes(api: Api) -> None:
    worker, claim = await _running_job(api, "w-done")
    job_id = claim["job"]["id"]
    assert (await worker.post(f"/api/jobs/{claim['lease']['lease_id']}/complete",
                              {})).status == 200
    assert (await worker.put(f"/api/jobs/{job_id}/artifacts/late", data=b"x")).status == 403


async def test_too_large_and_over_quota_are_refused_and_store_nothing(
        make_api: MakeApi, redis: aioredis.Redis) -> None:
    api = await make_api(artifact_max_bytes=1000, artifact_quota_bytes=1500)
    worker, claim = await _running_job(api, "w-limits")
    job_id = claim["job"]["id"]
    before = await redis.dbsize()
    big = await worker.put(f"/api/jobs/{job_id}/artifacts/big", data=b"x" * 1001)
    assert big.status == 413 and big.body["error"] == "artifact_too_large"

    async def chunked() -> Any:  # no Content-Length: refused while streaming
        for _ in range(5):
            yield b"y" * 300

    async with api.client.put(f"/api/jobs/{job_id}/artifacts/big", data=chunked(),
                              headers={"Authorization": f"Bearer {worker.token}"}) as resp:
        assert resp.status == 413
    assert await redis.dbsize() == before
    assert (await worker.put(f"/api/jobs/{job_id}/artifacts/a", data=b"a" * 1000)).status == 201
    over = await worker.put(f"/api/jobs/{job_id}/artifacts/b", data=b"b" * 600)
    assert over.status == 507 and over.body["error"] == "artifact_quota_exceeded"
    assert [a["name"] for a in (await api.get(f"/api/jobs/{job_id}/artifacts")).body] == ["a"]


async def test_a_downstream_worker_reads_its_upstream_artifacts_and_purge_removes_them(
        api: Api, redis: aioredis.Redis) -> None:
    wf = await api.post("/api/workflows", {"name": "plan", "queue": "art", "jobs": [
        {"id": "plan", "command": "plan"}, {"id": "apply", "command": "apply",
                                            "depends_on": ["plan"]}]})
    assert wf.status == 201, wf.text
    assert (await api.post(f"/api/workflows/{wf.body['id']}/run")).status == 202
    up = await api.register("w-up")
    first = await up.claim("w-up", queues=["art"])
    upstream = first["job"]["id"]
    assert (await up.put(f"/api/jobs/{upstream}/artifacts/plan.tfplan",
                         data=b"the plan")).status == 201
    assert (await up.post(f"/api/jobs/{first['lease']['lease_id']}/complete", {})).status == 200
    down = await api.register("w-down")
    second = await down.claim("w-down", queues=["art"])
    assert second["job"]["job_id"] == "apply"
    got = await down.get(f"/api/jobs/{upstream}/artifacts/plan.tfplan")
    assert (got.status, got.text) == (200, "the plan")
    stranger = await api.register("w-stranger")
    assert (await stranger.get(f"/api/jobs/{upstream}/artifacts")).status == 403

    scheduler = api.app[SERVICES].scheduler
    q = scheduler.queue_keys("art")
    prefix = q.prefix
    assert await redis.exists(f"{prefix}art:{upstream}")
    reply = await scheduler.scripts.reap(q, 100, now_ms=2**50)  # past every result TTL
    assert reply[0] == "OK"
    leftovers = [k async for k in redis.scan_iter(match=prefix + "art*")]
    assert leftovers == []
