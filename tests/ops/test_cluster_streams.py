"""Live SSE on Redis Cluster: one reader polls the watched streams of every shard."""

from __future__ import annotations

import asyncio
from typing import Any

from leasehold.api.server.appkeys import SERVICES
from tests.api.test_log_routes import Event, events_of, wait_for
from tests.ops import test_cluster as _cluster
from tests.ops.test_cluster import Client, call, claim, spread_queues

pytestmark = _cluster.pytestmark
cluster, cluster_settings, client = _cluster.cluster, _cluster.cluster_settings, _cluster.client


async def _until(resp: Any, done: Any) -> list[Event]:
    got: list[Event] = []
    async with asyncio.timeout(15):
        async for event in events_of(resp):
            got.append(event)
            if done(got):
                return got
    raise AssertionError("the stream closed early")


async def test_live_tails_and_events_of_queues_on_every_shard(
    client: Client, cluster_settings: Any,
) -> None:
    queues = spread_queues(cluster_settings.namespace)
    leases: dict[str, tuple[str, str]] = {}
    for queue in queues:
        job = await call(client, "POST", "/api/jobs", {"command": "make", "queue": queue}, 201)
        leased = await claim(client, queue, [], lease_ttl_secs=60)
        leases[queue] = (job["id"], leased["lease"]["lease_id"])
    events = await client.get("/api/events")  # every queue: keys on several slots
    tails = [await client.get(f"/api/jobs/{job_id}/logs/stream")
             for job_id, _ in leases.values()]
    hub = client.app[SERVICES].hub
    await wait_for(lambda: hub.viewers == 1 + len(queues), 10)
    for job_id, lease_id in leases.values():
        await call(client, "POST", f"/api/jobs/{lease_id}/logs",
                   {"chunks": [{"data": f"{job_id}\n"}]}, 202)
        await call(client, "POST", f"/api/jobs/{lease_id}/complete", {})
    for (job_id, _), tail in zip(leases.values(), tails, strict=True):
        got = await _until(tail, lambda got: got[-1].event == "end")
        assert [e.json()["data"] for e in got[:-1]] == [f"{job_id}\n"]
        assert got[-1].json() == {"status": "success"}
    done = await _until(events, lambda got: sum(e.json()["to"] == "success" for e in got)
                        == len(queues))
    assert {e.json()["queue"] for e in done if e.json()["to"] == "success"} == set(queues)
    assert hub.connections == 1
    events.close()
