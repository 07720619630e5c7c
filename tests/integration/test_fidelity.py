"""Payloads, metadata and outputs come back byte for byte; dependants read upstream outputs by
reference (no copy per dependant), and their claims carry the exact upstream text."""

from __future__ import annotations

from typing import Any, cast

import redis.asyncio as aioredis

from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import RAW_FIELDS, JobSpec, JobStatus
from leasehold.scheduler.rawjson import RawObject, loads_keeping
from leasehold.scheduler.workflow_defs import parse
from leasehold.scheduler.workflows import Workflows

# Everything a decode and re-encode would change: integers past 2^53 and 2^64, trailing zeros,
# out-of-range and negative-zero floats, empty arrays beside empty objects, escapes, unicode.
TRICKY = ('{"big": 1234567890123456789, "huge": 123456789012345678901234567890,'
          ' "f": 1.10, "e": 1e400, "z": -0.0, "tiny": 5e-324, "arr": [], "obj": {},'
          ' "nested": {"a": [], "b": [{}], "c": {"d": [[]]}},'
          ' "u": "h\\u00e9 ☃ 😀", "slash": "a\\/b"}')
PAYLOAD_ARRAY = '[[], {}, 18446744073709551616, 0.1e1, "x"]'


def spec_from_text(body: str) -> JobSpec:
    """A JobSpec as the HTTP edge builds it from a request body."""
    return JobSpec.model_validate(loads_keeping(body, RAW_FIELDS))


async def test_payload_and_metadata_round_trip_byte_for_byte(
        scheduler: Scheduler, redis: aioredis.Redis) -> None:
    body = f'{{"command": "x", "payload": {PAYLOAD_ARRAY}, "metadata": {TRICKY}}}'
    submitted = (await scheduler.submit(spec_from_text(body))).job
    assert submitted.payload is not None
    assert (submitted.payload.text, submitted.metadata.text) == (PAYLOAD_ARRAY, TRICKY)

    stored = await redis.hmget(scheduler.queue_keys("default").job(submitted.id),
                               ["payload", "metadata"])
    assert stored == [PAYLOAD_ARRAY, TRICKY]
    job = await scheduler.get(submitted.id)
    assert job.payload is not None
    assert (job.payload.text, job.metadata.text) == (PAYLOAD_ARRAY, TRICKY)
    claim = (await scheduler.claim("w", [])).claims[0]
    assert claim.job.payload is not None
    assert (claim.job.payload.text, claim.job.metadata.text) == (PAYLOAD_ARRAY, TRICKY)
    assert claim.job.metadata["big"] == 1234567890123456789  # decoded on demand, exactly


async def test_outputs_round_trip_byte_for_byte(scheduler: Scheduler) -> None:
    job_id = (await scheduler.submit(JobSpec(command="x"))).job.id
    lease = (await scheduler.claim("w", [])).claims[0].lease
    await scheduler.complete(lease.lease_id, "w", RawObject(TRICKY))
    job = await scheduler.get(job_id)
    assert (job.status, job.outputs and job.outputs.text) == (JobStatus.SUCCESS, TRICKY)
    page, _ = await scheduler.list_jobs("default")
    assert [j.outputs.text for j in page if j.outputs] == [TRICKY]


async def test_outputs_beyond_64_bits_from_python_values_are_exact(scheduler: Scheduler) -> None:
    job_id = (await scheduler.submit(JobSpec(command="x"))).job.id
    lease = (await scheduler.claim("w", [])).claims[0].lease
    await scheduler.complete(lease.lease_id, "w", {"n": 2**70, "l": [], "d": {}})
    outputs = (await scheduler.get(job_id)).outputs
    assert outputs is not None
    assert outputs.text == '{"n":1180591620717411303424,"l":[],"d":{}}'


async def run_fan_out(scheduler: Scheduler, dependants: int) -> tuple[Workflows, str]:
    workflows = Workflows(scheduler)
    nodes: list[dict[str, Any]] = [{"id": "up", "command": "build", "depends_on": []}]
    nodes += [{"id": f"d{i}", "command": "use", "depends_on": ["up"]} for i in range(dependants)]
    view = await workflows.create(parse({"name": "fan", "jobs": nodes}))
    await workflows.run(view.id)
    return workflows, view.id


async def test_dependants_claim_the_exact_upstream_text(scheduler: Scheduler) -> None:
    workflows = Workflows(scheduler)
    view = await workflows.create(parse({"name": "wf", "jobs": [
        {"id": "a", "command": "a", "depends_on": []},
        {"id": "b", "command": "b", "depends_on": []},
        {"id": "c", "command": "c", "depends_on": ["a", "b"]}]}))
    await workflows.run(view.id)
    roots = {c.job.job_id: c for c in (await scheduler.claim("w", [], max_jobs=10)).claims}
    assert roots["a"].job.upstream_outputs.text == "{}"  # a root has no upstream
    await scheduler.complete(roots["a"].lease.lease_id, "w", RawObject(TRICKY))
    await scheduler.complete(roots["b"].lease.lease_id, "w", RawObject('{"empty": []}'))

    expected = f'{{"a":{TRICKY},"b":{{"empty": []}}}}'
    claim = (await scheduler.claim("w", [])).claims[0]
    assert (claim.job.job_id, claim.job.upstream_outputs.text) == ("c", expected)
    assert (await scheduler.get(claim.job.id)).upstream_outputs.text == expected
    status = await workflows.status(view.id)
    outputs = {job.id: job.outputs.text for job in status.jobs if job.outputs}
    assert outputs == {"a": TRICKY, "b": '{"empty": []}'}


async def test_fan_out_stores_no_copy_of_upstream_outputs(
        scheduler: Scheduler, redis: aioredis.Redis) -> None:
    """200 dependants of a job with 100 KB of outputs: completing it writes no copy into any
    dependant (each record stays small), and every dependant's claim carries the exact text."""
    await run_fan_out(scheduler, 200)
    up = (await scheduler.claim("w", [])).claims[0]
    big = '{"blob": "' + "x" * 100_000 + '", "n": 123456789012345678901, "l": []}'
    await scheduler.complete(up.lease.lease_id, "w", RawObject(big))

    q = scheduler.queue_keys("default")
    claims = []
    while batch := (await scheduler.claim("w", [], max_jobs=100)).claims:
        claims += batch
    assert len(claims) == 200
    for claim in claims:
        key = q.job(claim.job.id)
        assert not await redis.hexists(key, "upstream_outputs")
        assert cast(int, await redis.memory_usage(key)) < 10_000
        assert claim.job.upstream_outputs.text == '{"up":' + big + "}"
