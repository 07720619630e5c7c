"""LogStore: ordered fenced append, cursor paging, dedup of resent batches, MAXLEN, retention,
the live tail, and the StreamHub under it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from leasehold.scheduler import errors
from leasehold.scheduler.config import Settings
from leasehold.scheduler.logs import LogChunk, LogStore, LogTooLarge, NewChunk, SubscriberTooSlow
from leasehold.scheduler.models import JobSpec, JobStatus, Lease
from leasehold.scheduler.reaper import Reaper
from leasehold.scheduler.service import Services, open_services
from leasehold.scheduler.streams import Subscription
from tests.integration.test_queues import T0


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    opened = await open_services(settings)
    try:
        yield opened
    finally:
        await opened.close()


async def start(services: Services, ttl: float = 10, **fields: object) -> Lease:
    """Submits one job and claims it as worker ``w`` at T0."""
    spec = JobSpec.model_validate({"lease_ttl_secs": ttl, **fields})
    await services.scheduler.submit(spec, now_ms=T0)
    batch = await services.scheduler.claim("w", [], now_ms=T0)
    return batch.claims[0].lease


def numbered(first: int, last: int, stream: str = "stdout") -> list[NewChunk]:
    """Chunks ``first..last`` (inclusive) whose data and sequence are their number."""
    return [NewChunk(str(n), stream, n) for n in range(first, last + 1)]


async def all_chunks(logs: LogStore, job_id: str) -> list[LogChunk]:
    chunks, _ = await logs.read(job_id)
    return chunks


async def stream_length(services: Services, job_id: str) -> int:
    return int(await services.redis.xlen(services.logs.key(job_id)))


def ids_increase(chunks: list[LogChunk]) -> bool:
    keys = [tuple(int(part) for part in c.id.split("-")) for c in chunks]
    return all(a < b for a, b in itertools.pairwise(keys))


async def test_chunks_keep_their_order_across_batches(services: Services) -> None:
    lease = await start(services)
    logs = services.logs
    first = await logs.append(lease.lease_id, "w", numbered(0, 2), now_ms=T0 + 1)
    await logs.append(lease.lease_id, "w", [NewChunk("3", "stderr", 3, 42)], now_ms=T0 + 2)
    last = await logs.append(lease.lease_id, "w", numbered(4, 6, "system"), now_ms=T0 + 3)
    assert (first.appended, first.dropped) == (3, 0)
    chunks = await all_chunks(logs, lease.job_id)
    assert [c.data for c in chunks] == [str(n) for n in range(7)]
    assert [c.sequence for c in chunks] == list(range(7))
    assert [c.stream for c in chunks] == ["stdout"] * 3 + ["stderr"] + ["system"] * 3
    assert ids_increase(chunks)
    assert chunks[-1].id == last.last_id
    assert chunks[3].timestamp_ms == 42  # the worker's own timestamp is kept
    assert chunks[0].timestamp_ms == T0 + 1  # else the server's clock
    assert {(c.job_id, c.attempt) for c in chunks} == {(lease.job_id, 0)}


async def test_after_cursor_pages_with_a_limit(services: Services) -> None:
    lease = await start(services)
    await services.logs.append(lease.lease_id, "w", numbered(0, 24), now_ms=T0 + 1)
    pages: list[list[LogChunk]] = []
    after: str | None = None
    while True:
        page, ended = await services.logs.read(lease.job_id, after, limit=10)
        assert ended is None
        if not page:
            break
        pages.append(page)
        after = page[-1].id
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [c.data for p in pages for c in p] == [str(n) for n in range(25)]
    assert [c for p in pages for c in p] == await all_chunks(services.logs, lease.job_id)
    with pytest.raises(errors.InvalidArgument):
        await services.logs.read(lease.job_id, "not-an-id")


async def test_unknown_job_has_no_logs(services: Services) -> None:
    lease = await start(services)
    with pytest.raises(errors.JobNotFound):
        await services.logs.read(lease.job_id[:-4] + "zzzz")
    with pytest.raises(errors.JobNotFound):
        await services.logs.read("garbage")


async def test_an_expired_lease_stores_nothing(services: Services) -> None:
    lease = await start(services, ttl=10)
    with pytest.raises(errors.LeaseExpired):
        await services.logs.append(lease.lease_id, "w", numbered(0, 1), now_ms=T0 + 10_000)
    await Reaper(services.scheduler).run_once(now_ms=T0 + 10_001)  # now marked expired
    with pytest.raises(errors.LeaseExpired):
        await services.logs.append(lease.lease_id, "w", numbered(0, 1), now_ms=T0 + 10_002)
    assert await all_chunks(services.logs, lease.job_id) == []


async def test_a_superseded_lease_stores_nothing(services: Services) -> None:
    old = await start(services, ttl=10, retry_policy={"max_retries": 1})
    await Reaper(services.scheduler).run_once(now_ms=T0 + 10_001)
    new = (await services.scheduler.claim("w2", [], now_ms=T0 + 10_002)).claims[0].lease
    assert new.job_id == old.job_id
    with pytest.raises(errors.LeaseSuperseded):
        await services.logs.append(old.lease_id, "w", numbered(0, 1), now_ms=T0 + 10_003)
    assert await all_chunks(services.logs, old.job_id) == []


@pytest.mark.parametrize(("action", "lost"), [
    ("complete", errors.JobFinished),
    ("fail", errors.JobFinished),
    ("cancel", errors.JobCancelled),
    ("release", errors.LeaseNotFound),
])
async def test_a_lease_that_ended_stores_nothing(
    services: Services, action: str, lost: type[errors.LeaseLost],
) -> None:
    lease = await start(services)
    await services.logs.append(lease.lease_id, "w", numbered(0, 0), now_ms=T0 + 1)
    scheduler = services.scheduler
    if action == "complete":
        await scheduler.complete(lease.lease_id, "w", now_ms=T0 + 2)
    elif action == "fail":
        await scheduler.fail(lease.lease_id, "boom", "w", now_ms=T0 + 2)
    elif action == "cancel":
        await scheduler.cancel(lease.job_id, now_ms=T0 + 2)
    else:
        await scheduler.release(lease.lease_id, "w", now_ms=T0 + 2)
    before = await stream_length(services, lease.job_id)
    with pytest.raises(lost):
        await services.logs.append(lease.lease_id, "w", numbered(1, 2), now_ms=T0 + 3)
    assert await stream_length(services, lease.job_id) == before
    assert [c.data for c in await all_chunks(services.logs, lease.job_id)] == ["0"]


async def test_a_malformed_or_unknown_lease_is_not_found(services: Services) -> None:
    lease = await start(services)
    with pytest.raises(errors.LeaseNotFound):
        await services.logs.append("nonsense", "w", numbered(0, 0))
    forged = lease.lease_id[:-4] + ("aaaa" if not lease.lease_id.endswith("aaaa") else "bbbb")
    with pytest.raises(errors.LeaseLost):
        await services.logs.append(forged, "w", numbered(0, 0), now_ms=T0 + 1)
    assert await all_chunks(services.logs, lease.job_id) == []


async def test_another_workers_lease_is_refused(services: Services) -> None:
    lease = await start(services)
    with pytest.raises(errors.NotLeaseOwner):
        await services.logs.append(lease.lease_id, "intruder", numbered(0, 1), now_ms=T0 + 1)
    assert await all_chunks(services.logs, lease.job_id) == []
    # the owner, and a caller that skips the ownership check (an admin), may append
    await services.logs.append(lease.lease_id, "w", numbered(0, 0), now_ms=T0 + 2)
    await services.logs.append(lease.lease_id, "", numbered(1, 1), now_ms=T0 + 3)
    assert len(await all_chunks(services.logs, lease.job_id)) == 2


async def test_a_resent_batch_stores_nothing_new(services: Services) -> None:
    lease = await start(services)
    logs = services.logs
    assert (await logs.append(lease.lease_id, "w", numbered(0, 4), now_ms=T0 + 1)).appended == 5
    again = await logs.append(lease.lease_id, "w", numbered(0, 4), now_ms=T0 + 2)
    assert (again.appended, again.dropped, again.last_id) == (0, 5, None)
    overlap = await logs.append(lease.lease_id, "w", numbered(3, 7), now_ms=T0 + 3)
    assert (overlap.appended, overlap.dropped) == (3, 2)
    # chunks without a sequence cannot be recognised, so they are always kept
    plain = [NewChunk("x"), NewChunk("y")]
    assert (await logs.append(lease.lease_id, "w", plain, now_ms=T0 + 4)).appended == 2
    # a sequence at or below the last one stored is dropped even after unsequenced chunks
    late = await logs.append(lease.lease_id, "w", numbered(6, 8), now_ms=T0 + 5)
    assert (late.appended, late.dropped) == (1, 2)
    chunks = await all_chunks(logs, lease.job_id)
    assert [c.data for c in chunks] == [*map(str, range(8)), "x", "y", "8"]
    assert [c.sequence for c in chunks] == [*range(8), None, None, 8]


async def test_a_new_lease_restarts_sequences(services: Services) -> None:
    first = await start(services, ttl=10, retry_policy={"max_retries": 1})
    await services.logs.append(first.lease_id, "w", numbered(0, 2), now_ms=T0 + 1)
    await Reaper(services.scheduler).run_once(now_ms=T0 + 10_001)
    second = (await services.scheduler.claim("w", [], now_ms=T0 + 10_002)).claims[0].lease
    assert second.lease_id != first.lease_id
    pushed = await services.logs.append(second.lease_id, "w", numbered(0, 2), now_ms=T0 + 10_003)
    assert (pushed.appended, pushed.dropped) == (3, 0)
    chunks = await all_chunks(services.logs, first.job_id)
    assert [(c.sequence, c.attempt) for c in chunks] == [
        (0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]


async def test_maxlen_caps_the_stream_and_keeps_the_newest(settings: Settings) -> None:
    services = await open_services(settings.model_copy(update={"log_maxlen": 100}))
    try:
        lease = await start(services)
        for batch in range(10):
            chunks = numbered(batch * 100, batch * 100 + 99)
            await services.logs.append(lease.lease_id, "w", chunks, now_ms=T0 + batch)
        length = await stream_length(services, lease.job_id)
        assert 100 <= length <= 200  # XADD MAXLEN ~ trims whole radix-tree nodes
        kept = await all_chunks(services.logs, lease.job_id)
        assert [c.sequence for c in kept] == list(range(1000 - len(kept), 1000))
    finally:
        await services.close()


async def test_the_end_marker_is_not_a_chunk(services: Services) -> None:
    lease = await start(services)
    await services.logs.append(lease.lease_id, "w", numbered(0, 2), now_ms=T0 + 1)
    chunks, ended = await services.logs.read(lease.job_id)
    assert (len(chunks), ended) == (3, None)
    await services.scheduler.complete(lease.lease_id, "w", now_ms=T0 + 2)
    chunks, ended = await services.logs.read(lease.job_id)
    assert [c.data for c in chunks] == ["0", "1", "2"]
    assert ended == "success"
    assert await stream_length(services, lease.job_id) == 4  # the chunks and the marker
    # a reader that resumes after the last chunk learns only that the log ended
    assert await services.logs.read(lease.job_id, chunks[-1].id) == ([], "success")


async def test_an_old_end_marker_does_not_end_a_retried_job(services: Services) -> None:
    lease = await start(services)
    await services.scheduler.fail(lease.lease_id, "boom", "w", now_ms=T0 + 1)
    assert (await services.logs.read(lease.job_id))[1] == "failure"
    await services.scheduler.retry(lease.job_id, now_ms=T0 + 2)
    chunks, ended = await services.logs.read(lease.job_id)
    assert (chunks, ended) == ([], None)


async def test_logs_expire_with_the_job(services: Services) -> None:
    lease = await start(services, result_ttl_secs=60)
    await services.logs.append(lease.lease_id, "w", numbered(0, 9), now_ms=T0 + 1)
    await services.scheduler.complete(lease.lease_id, "w", now_ms=T0 + 2)
    key = services.logs.key(lease.job_id)
    assert await services.redis.pttl(key) > 0  # the backstop expiry when no reaper runs
    reaper = Reaper(services.scheduler)
    await reaper.run_once(now_ms=T0 + 2 + 59_000)
    assert await services.redis.exists(key) == 1  # not yet
    report = await reaper.run_once(now_ms=T0 + 2 + 60_001)
    assert report.purged == 1
    assert await services.redis.exists(key) == 0
    with pytest.raises(errors.JobNotFound):
        await services.logs.read(lease.job_id)


async def _collect(items: AsyncIterator[LogChunk | str]) -> list[LogChunk | str]:
    return [item async for item in items]


async def test_tail_sends_history_then_live_chunks_then_the_status(services: Services) -> None:
    lease = await start(services)
    logs = services.logs
    await logs.append(lease.lease_id, "w", numbered(0, 2), now_ms=T0 + 1)
    tail = asyncio.create_task(_collect(logs.tail(lease.job_id, None)))
    await asyncio.sleep(0.05)
    assert services.hub.viewers == 1
    for n in range(3, 6):
        await logs.append(lease.lease_id, "w", numbered(n, n), now_ms=T0 + n)
    await services.scheduler.complete(lease.lease_id, "w", now_ms=T0 + 10)
    got = await asyncio.wait_for(tail, 5)
    assert [c.data for c in got if isinstance(c, LogChunk)] == [str(n) for n in range(6)]
    assert got[-1] == "success"
    assert (services.hub.viewers, services.hub.streams) == (0, 0)  # nothing watched any more

    resumed = await _collect(logs.tail(lease.job_id, next(
        c.id for c in got if isinstance(c, LogChunk) and c.data == "3")))
    assert [c.data if isinstance(c, LogChunk) else c for c in resumed] == ["4", "5", "success"]


async def test_tail_of_a_slow_viewer_ends_with_too_slow(services: Services) -> None:
    services.hub.maxsize = 3
    lease = await start(services)
    await services.logs.append(lease.lease_id, "w", numbered(0, 0), now_ms=T0 + 1)
    tail = services.logs.tail(lease.job_id, None)
    first = await anext(tail)
    assert isinstance(first, LogChunk)
    assert first.data == "0"
    for n in range(1, 11):  # the viewer reads none of these while they arrive
        await services.logs.append(lease.lease_id, "w", numbered(n, n), now_ms=T0 + n)
    await asyncio.sleep(0.2)
    seen = [first.data]
    with pytest.raises(SubscriberTooSlow):
        async for item in tail:
            assert isinstance(item, LogChunk)
            seen.append(item.data)
    assert seen == [str(n) for n in range(len(seen))]  # a prefix: nothing skipped
    assert len(seen) < 11
    assert services.hub.viewers == 0
    resumed = await services.logs.read(lease.job_id, next(
        c.id for c in await all_chunks(services.logs, lease.job_id) if c.data == seen[-1]))
    assert [c.data for c in resumed[0]] == [str(n) for n in range(len(seen), 11)]
    assert (await services.scheduler.get(lease.job_id)).status == JobStatus.RUNNING


async def test_viewers_leaving_at_once_leave_one_reader(services: Services) -> None:
    """A viewer that leaves in the same loop turn an entry reaches it (so its leaving lands while
    the reader sends its next XREAD) leaves no hanging exit, and never more than one reader."""
    hub, key = services.hub, "stream-hub-probe"
    for _ in range(3):
        sub = await hub.subscribe([key])

        async def leave_on_first_entry(sub: Subscription = sub) -> None:
            await sub.queue.get()
            await hub.unsubscribe(sub)

        leaving = asyncio.create_task(leave_on_first_entry())
        await asyncio.sleep(0.05)  # the reader waits in XREAD
        await services.redis.xadd(key, {"n": "1"})
        await asyncio.wait_for(leaving, 2)
        assert (hub.viewers, hub.streams) == (0, 0)
    assert await _blocked_readers(services) <= 1
    assert hub.connections == 1


async def _blocked_readers(services: Services) -> int:
    return sum(c["cmd"] == "xread" for c in await services.redis.client_list())


async def test_a_job_that_never_logged_has_no_stream_and_its_tail_ends(
    services: Services,
) -> None:
    lease = await start(services)
    tail = asyncio.create_task(_collect(services.logs.tail(lease.job_id, None)))
    await asyncio.sleep(0.05)
    assert services.hub.viewers == 1
    await services.scheduler.complete(lease.lease_id, "w", now_ms=T0 + 1)
    assert await asyncio.wait_for(tail, 5) == ["success"]
    assert await services.redis.exists(services.logs.key(lease.job_id)) == 0
    assert await services.logs.read(lease.job_id) == ([], "success")


async def test_the_log_is_capped_in_bytes_with_one_truncation_notice(settings: Settings) -> None:
    services = await open_services(settings.model_copy(update={"log_max_bytes": 2048}))
    try:
        lease = await start(services)
        kib = [NewChunk("x" * 1023 + "\n", "stdout", n) for n in range(3)]
        with pytest.raises(LogTooLarge):
            await services.logs.append(lease.lease_id, "w", kib, now_ms=T0 + 1)
        for n in range(3, 6):  # pushes keep coming: nothing more is stored
            with pytest.raises(LogTooLarge):
                await services.logs.append(lease.lease_id, "w", [NewChunk("y", "stdout", n)],
                                           now_ms=T0 + 1)
        chunks = await all_chunks(services.logs, lease.job_id)
        assert [(c.stream, c.sequence) for c in chunks] == [
            ("stdout", 0), ("stdout", 1), ("system", None)]
        assert sum(len(c.data) for c in chunks[:2]) == 2048
        assert chunks[-1].data.startswith("log truncated")
        # the notice is the log's last chunk even after the job ends
        await services.scheduler.complete(lease.lease_id, "w", now_ms=T0 + 2)
        assert (await services.logs.read(lease.job_id))[0] == chunks
    finally:
        await services.close()
