"""The same code on a real 3-master Redis Cluster: the core scenario through the API, queues on
different shards, long-poll wake-ups across nodes, and the reaper expiring a lease."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from redis.crc import key_slot
from structlog.testing import capture_logs

from leasehold.api.app import create_app
from leasehold.scheduler.config import Settings
from leasehold.scheduler.connection import connect
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.keys import Keyspace
from leasehold.scheduler.reaper import Reaper
from leasehold.scheduler.service import warn_about_eviction, warn_about_persistence
from tests.ops.cluster import LocalCluster
from tests.ops.scrape import parse, value

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None or
                                shutil.which("redis-server") is None,
                                reason="needs redis-server and redis-cli")

Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def cluster_settings(cluster: LocalCluster) -> Settings:
    return Settings(redis_url=cluster.url, redis_cluster=True, auth=False,
                    namespace=f"c{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, cluster_settings: Settings) -> Client:
    """The API, with worker w1 registered (a claim names a registered worker)."""
    test_client = await aiohttp_client(create_app(cluster_settings))
    await call(test_client, "POST", "/api/workers/register", {"worker_id": "w1"}, 201)
    return test_client


@pytest.fixture
async def scheduler(cluster_settings: Settings) -> AsyncIterator[Scheduler]:
    sched = Scheduler(connect(cluster_settings.redis_url or "", cluster=True), cluster_settings)
    await sched.start()
    try:
        yield sched
    finally:
        await sched.redis.aclose()


def spread_queues(namespace: str, shards: int = 3) -> list[str]:
    """One queue name per third of the slot space (``--cluster create`` gives each master one)."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < shards:
        name = f"q{n}"
        found.setdefault(key_slot(Keyspace(namespace).queue(name).meta.encode()) * shards
                         // 16384, name)
        n += 1
    return [found[i] for i in range(shards)]


async def call(client: Client, method: str, path: str, body: Any = None,
               expect: int = 200) -> Any:
    resp = await client.request(method, path, json=body)
    assert resp.status == expect, (path, await resp.text())
    return await resp.json()


async def claim(client: Client, queue: str, labels: list[str], **extra: Any) -> Any:
    return await call(client, "POST", "/api/jobs/claim", {
        "worker_id": "w1", "labels": labels, "queues": [queue], **extra})


async def test_core_scenario_runs_on_a_cluster_with_queues_on_several_shards(
        cluster: LocalCluster, client: Client, scheduler: Scheduler,
        cluster_settings: Settings) -> None:
    namespace = cluster_settings.namespace
    queues = spread_queues(namespace)
    await call(client, "PATCH", "/api/workers/w1", {"labels": ["linux", "gpu"]})
    retry = {"max_retries": 1, "backoff": "None"}
    for queue in queues:
        job = await call(client, "POST", "/api/jobs", {
            "command": "make", "queue": queue, "required_labels": ["linux"],
            "retry_policy": retry}, 201)
        assert (await claim(client, queue, ["windows"])) is None  # labels must match
        leased = await claim(client, queue, ["linux", "gpu"], lease_ttl_secs=30)
        lease = leased["lease"]["lease_id"]
        beat = await call(client, "POST", f"/api/jobs/{lease}/heartbeat", {"progress": 50})
        assert beat["cancelled"] is False
        await call(client, "POST", f"/api/jobs/{lease}/logs",
                   {"chunks": [{"data": "building\n", "stream": "stdout"}]}, 202)
        failed = await call(client, "POST", f"/api/jobs/{lease}/fail",
                            {"error": "flaky", "retryable": True})
        assert failed["will_retry"] is True
        again = (await claim(client, queue, ["linux"]))["lease"]["lease_id"]
        await call(client, "POST", f"/api/jobs/{again}/complete", {"outputs": {"ok": True}})
        done = await call(client, "GET", f"/api/jobs/{job['id']}")
        assert (done["status"], done["attempt"], done["outputs"]) == ("success", 1, {"ok": True})
        logs = await call(client, "GET", f"/api/jobs/{job['id']}/logs")
        assert [chunk["data"] for chunk in logs] == ["building\n"]
        stream = await client.get(f"/api/jobs/{job['id']}/logs/stream")  # ends: job finished
        text = await asyncio.wait_for(stream.text(), 10)
        assert "building" in text and "event: end" in text

    queued = await call(client, "POST", "/api/jobs", {"command": "x", "queue": queues[0]}, 201)
    await call(client, "POST", f"/api/jobs/{queued['id']}/cancel", None, 202)
    assert (await call(client, "GET", f"/api/jobs/{queued['id']}"))["status"] == "cancelled"

    owners = _owners(cluster, namespace)
    assert set(owners) == set(queues)  # every key of a queue lives on one node ...
    assert len(set(owners.values())) >= 2  # ... and the queues are spread over the shards

    stats = {q["queue"]: q for q in await call(client, "GET", "/api/queues")}
    assert all(stats[q]["counters"]["finished:success"] == 1 for q in queues)
    samples = parse(await (await client.get("/metrics")).text())
    assert value(samples, "leasehold_jobs_retried_total", queue=queues[1]) == 1
    assert value(samples, "leasehold_workers", status="online") == 1

    await call(client, "DELETE", "/api/workers/w1")  # one MULTI on the {ns} slot
    token = await call(client, "POST", "/api/tokens", {"role": "viewer", "name": "v"}, 201)
    await call(client, "DELETE", f"/api/tokens/{token['id']}")
    assert (await client.get("/readyz")).status == 200


def _owners(cluster: LocalCluster, namespace: str) -> dict[str, int]:
    """Queue name -> port of the node holding its keys (each node lists only its own keys)."""
    owners: dict[str, int] = {}
    for node in cluster.nodes:
        local = redis.Redis(port=node.port, decode_responses=True)
        try:
            for key in local.scan_iter(match=f"{{{namespace}:*", count=1000):
                queue = key[len(namespace) + 2:key.index("}")]
                assert owners.setdefault(queue, node.port) == node.port, key
        finally:
            local.close()
    return owners


async def test_long_poll_is_woken_by_a_submit_on_another_shard(
        client: Client, cluster_settings: Settings) -> None:
    queues = spread_queues(cluster_settings.namespace)
    for queue in queues:
        started = time.monotonic()
        waiting = asyncio.create_task(claim(client, queue, [], wait_secs=10))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        job = await call(client, "POST", "/api/jobs", {"command": "x", "queue": queue}, 201)
        leased = await asyncio.wait_for(waiting, 5)
        assert leased["job"]["id"] == job["id"]
        assert time.monotonic() - started < 3  # the PUBLISH woke it, not the 10 s timeout


async def test_reaper_expires_a_lease_on_the_cluster(
        client: Client, scheduler: Scheduler, cluster_settings: Settings) -> None:
    queue = spread_queues(cluster_settings.namespace)[2]
    job = await call(client, "POST", "/api/jobs", {"command": "x", "queue": queue}, 201)
    lease = (await claim(client, queue, [], lease_ttl_secs=1))["lease"]
    report = await Reaper(scheduler).run_once(now_ms=lease["expires_at_ms"] + 1)
    assert report.expired == 1
    expired = await call(client, "GET", f"/api/jobs/{job['id']}")
    assert (expired["status"], expired["error"]) == ("failure", "lease_expired")
    late = await client.post(f"/api/jobs/{lease['lease_id']}/complete", json={})
    assert (late.status, (await late.json())["error"]) == (409, "lease_expired")
    samples = parse(await (await client.get("/metrics")).text())
    assert value(samples, "leasehold_leases_expired_total", queue=queue) == 1
    assert value(samples, "leasehold_reaper_passes_total") == 1


async def test_start_up_checks_read_the_config_of_every_primary(
        cluster: LocalCluster, scheduler: Scheduler) -> None:
    last = redis.Redis(port=cluster.nodes[-1].port)  # not the node the URL names
    last.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with capture_logs() as logs:  # the test nodes run with --save '' --appendonly no
            await warn_about_eviction(scheduler.redis)
            await warn_about_persistence(scheduler.redis)
    finally:
        last.config_set("maxmemory-policy", "noeviction")
        last.close()
    events = [entry["event"] for entry in logs]
    assert events == ["redis_eviction_enabled", "redis_persistence_disabled"]


async def test_a_burst_of_claims_waits_for_connections_instead_of_failing(
        cluster: LocalCluster, aiohttp_client: AiohttpClient,
        cluster_settings: Settings) -> None:
    """More concurrent requests than the per-node pool holds: they queue for a connection."""
    settings = cluster_settings.model_copy(update={"redis_max_connections": 3})
    client = await aiohttp_client(create_app(settings))
    queues = spread_queues(settings.namespace)
    await call(client, "POST", "/api/workers/register", {"worker_id": "w1", "labels": []}, 201)
    jobs = [{"command": "true", "queue": queues[n % 3]} for n in range(50)]
    for queue in queues:
        await call(client, "POST", "/api/jobs/bulk",
                   {"jobs": [job for job in jobs if job["queue"] == queue]}, 201)

    async def one(n: int) -> tuple[int, Any]:
        resp = await client.post("/api/jobs/claim", json={
            "worker_id": "w1", "labels": [], "queues": [queues[n % 3]]})
        return resp.status, await resp.json()

    replies = await asyncio.gather(*(one(n) for n in range(50)))
    assert [status for status, _ in replies] == [200] * 50, replies
    assert len({body["job"]["id"] for _, body in replies}) == 50
