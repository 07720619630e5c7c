"""``WorkerRegistry``: registration, heartbeats, drain, revocation and offline marking of agents."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import cast

import orjson
import structlog
from pydantic import JsonValue
from redis.asyncio import Redis

from leasehold.scheduler import codec, errors
from leasehold.scheduler.auth import TokenStore, auth_channel, digest, new_secret
from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.keys import new_token
from leasehold.scheduler.models import Claim, Worker, WorkerStatus
from leasehold.scheduler.scripts import raise_for

log = structlog.get_logger("leasehold.workers")
WORKER_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
SWEEP_BATCH = 500
SEEN_FLUSH_SECS = 1.0  # signs of life reach the worker record this late at most
SEEN_BATCH = 500
Held = list[tuple[int, str]]  # (lease granted at ms, job id) of each active lease a worker holds


@dataclass(frozen=True)
class Claimant:
    """The registered worker a claim is for, as its record said when the claim began."""

    worker_id: str
    labels: frozenset[str]
    drain: bool
    registered_at_ms: int


class WorkerRegistry:
    """Worker records live under the namespace's hash tag; tokens are stored as SHA-256 only."""

    def __init__(self, scheduler: Scheduler, tokens: TokenStore | None = None) -> None:
        self.scheduler = scheduler
        # Tells every API process to forget a changed worker's cached token at once.
        self.tokens = tokens
        self.redis: Redis = scheduler.redis
        self.keys = scheduler.keys
        self.scripts = scheduler.scripts
        self.settings: Settings = scheduler.settings
        # Workers this process saw claim or call a lease since the last flush; written in one
        # script call at most once a second (claims and lease calls run in the queue's hash
        # slot, which cannot reach the worker records, and stay one round trip).
        self._seen: set[str] = set()
        self._flusher: asyncio.Task[None] | None = None

    @property
    def offline_ms(self) -> int:
        return codec.ms(self.settings.worker_offline_secs)

    @property
    def retention_ms(self) -> int:
        return codec.ms(self.settings.worker_retention_secs)

    async def register(
        self,
        registration_token: str | None,
        worker_id: str | None,
        name: str | None,
        labels: list[str],
        version: str | None = None,
        metadata: dict[str, JsonValue] | None = None,
        replace_live: bool = False,
    ) -> tuple[Worker, str]:
        """Returns the worker and its token (shown once). ``registration_token`` None = admin.
        ``replace_live``: the id may belong to a live worker (that worker restarting); its
        earlier leases go back to the queue."""
        worker_id = worker_id or f"w-{new_token()}"
        if not WORKER_ID.match(worker_id):
            raise errors.InvalidArgument("worker_id must match " + WORKER_ID.pattern)
        token = new_secret("lhw_")
        reply = await self.scripts.register(
            self.keys, digest(registration_token) if registration_token else None, worker_id,
            name or worker_id, codec.dumps(sorted(set(labels))), version or "",
            codec.dumps(metadata or {}), self.offline_ms, digest(token), replace_live=replace_live)
        raise_for(reply, worker_id=worker_id)
        await self._changed(worker_id)  # a replaced registration's token fails everywhere
        if int(reply[2]):
            # The id belonged to an offline worker: what it still held goes back to its queue
            # (without using an attempt) before the new owner learns its token.
            await self._release_leases_of(worker_id, granted_before_ms=int(reply[1]))
        return await self.get(worker_id), token

    async def update(self, worker_id: str, labels: list[str] | None = None,
                     name: str | None = None,
                     metadata: dict[str, JsonValue] | None = None) -> Worker:
        """Changes a worker's labels, name or metadata (admin); a live holder's name is 409."""
        reply = await self.scripts.update_worker(
            self.keys, worker_id, codec.dumps(sorted(set(labels))) if labels is not None else "",
            name or "", codec.dumps(metadata) if metadata is not None else "", self.offline_ms)
        if reply[0] == "NOT_FOUND":
            raise errors.WorkerNotFound("no such worker", worker_id=worker_id)
        raise_for(reply, worker_id=worker_id)
        await self._changed(worker_id)
        return await self.get(worker_id)

    async def claimant(self, worker_id: str) -> Claimant:
        """The registered worker an admin claims for; an unknown id is WorkerNotFound."""
        labels, drain, registered = cast(list[str | None], await self.redis.hmget(
            self.keys.worker(worker_id), ["labels", "drain", "registered_at_ms"]))
        if registered is None:
            raise errors.WorkerNotFound("no such worker: register it before claiming for it",
                                        worker_id=worker_id)
        return Claimant(worker_id, frozenset(orjson.loads(labels or "[]")), drain == "1",
                        int(registered))

    async def keep_claims(self, who: Claimant, claims: list[Claim], generation: int = -1
                          ) -> list[Claim]:
        """The claims, or none when the worker was drained, revoked or replaced while claiming.

        Checked after the claim script: a revoke that deleted the record before this read
        finds no lease to release, so the claim releases what it got itself; one that deleted
        it after this read runs its lease sweep after the claim, and releases them there. A
        drain written before this read is seen here, so no job reaches a draining worker.
        ``generation``: the auth cache's generation when ``who`` was known valid; when no
        worker changed in any process since (drain, revoke and re-registration are announced
        before and after they write), the claims are kept without reading the record.
        """
        if not claims:
            return claims
        cache = self.tokens.cache if self.tokens is not None else None
        if generation >= 0 and cache is not None and cache.unchanged_since(generation):
            return claims
        registered, drain = cast(list[str | None], await self.redis.hmget(
            self.keys.worker(who.worker_id), ["registered_at_ms", "drain"]))
        if registered == str(who.registered_at_ms) and drain != "1":
            return claims
        for claim in claims:
            with contextlib.suppress(errors.LeaseLost):  # the revoke's sweep got there first
                await self.scheduler.release(claim.lease.lease_id, who.worker_id)
        return []

    async def heartbeat(
        self,
        worker_id: str,
        version: str | None = None,
        running_jobs: int | None = None,
        resource_usage: dict[str, JsonValue] | None = None,
    ) -> bool:
        """Marks the worker alive; returns whether it should drain."""
        usage = codec.dumps(resource_usage) if resource_usage is not None else None
        reply = await self.scripts.worker_heartbeat(self.keys, worker_id, version, running_jobs,
                                                    usage)
        if reply[0] == "NOT_FOUND":
            raise errors.WorkerNotFound("no such worker", worker_id=worker_id)
        return bool(int(reply[1]))

    # -- signs of life ------------------------------------------------------------------------

    def seen(self, worker_id: str) -> None:
        """A claim or lease call of ``worker_id``: a sign of life, written with the others of
        this process within ``SEEN_FLUSH_SECS``."""
        if not worker_id:
            return
        self._seen.add(worker_id)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        while self._seen:
            await asyncio.sleep(SEEN_FLUSH_SECS)
            await self.flush()

    async def flush(self) -> None:
        """Writes the signs of life seen so far (kept for the next try if Redis fails)."""
        seen, self._seen = sorted(self._seen), set()
        try:
            for start in range(0, len(seen), SEEN_BATCH):
                await self.scripts.workers_seen(self.keys, seen[start:start + SEEN_BATCH])
        except errors.BACKEND_ERRORS:
            self._seen.update(seen)
            log.warning("worker_signs_of_life_not_written", workers=len(seen))

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, *errors.BACKEND_ERRORS):
                await self._flusher
        with contextlib.suppress(*errors.BACKEND_ERRORS):
            await self.flush()

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, worker_id: str) -> Worker:
        record = cast(dict[str, str], await self.redis.hgetall(self.keys.worker(worker_id)))
        if not record:
            raise errors.WorkerNotFound("no such worker", worker_id=worker_id)
        return _worker(record, (await self.holdings()).get(worker_id, []))

    async def list(self, status: str | None = None, label: str | None = None) -> list[Worker]:
        """Workers by registration time; ``status`` online = idle and busy."""
        ids = cast(list[str], await self.redis.zrange(self.keys.workers, 0, -1))
        async with self.redis.pipeline(transaction=False) as pipe:
            for worker_id in ids:
                pipe.hgetall(self.keys.worker(worker_id))
            records = cast(list[dict[str, str]], await pipe.execute())
        held = await self.holdings() if records else {}
        workers = [_worker(r, held.get(r["worker_id"], [])) for r in records if r]
        wanted = {WorkerStatus.IDLE, WorkerStatus.BUSY} if status == "online" else {status}
        return [w for w in workers
                if (status is None or w.status in wanted) and (label is None or label in w.labels)]

    async def holdings(self) -> dict[str, Held]:
        """worker id -> (granted at ms, job id) of each active lease it holds, read from every
        queue's lease set: two round trips, cost proportional to the running jobs."""
        queues = await self.scheduler.queues()
        async with self.redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.zrange(self.scheduler.queue_keys(queue).leases, 0, -1)
            leased = cast(list[list[str]], await pipe.execute())
        jobs = [(self.scheduler.queue_keys(queue).job(job_id), job_id)
                for queue, ids in zip(queues, leased, strict=True) for job_id in ids]
        held: dict[str, Held] = defaultdict(list)
        if not jobs:
            return held
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, _ in jobs:
                pipe.hmget(key, ["worker_id", "lease_state", "lease_granted_at_ms"])
            found = cast(list[list[str | None]], await pipe.execute())
        for (_, job_id), (owner, state, granted) in zip(jobs, found, strict=True):
            if owner and state == "active":
                held[owner].append((int(granted or 0), job_id))
        return held

    async def draining(self, worker_id: str) -> bool:
        """Whether an admin asked this worker to drain (False for an unregistered id)."""
        flag = await self.redis.hget(self.keys.worker(worker_id), "drain")
        return bool(flag == "1")

    async def set_drain(self, worker_id: str, drain: bool) -> Worker:
        worker = await self.get(worker_id)
        status = WorkerStatus.DRAINING if drain else WorkerStatus.ONLINE
        if worker.status == WorkerStatus.OFFLINE:
            status = WorkerStatus.OFFLINE
        await self._changed(worker_id)  # claims under way read the record after this
        await self.redis.hset(self.keys.worker(worker_id),
                              items=["drain", "1" if drain else "0", "status", status.value])
        await self._changed(worker_id)
        return await self.get(worker_id)

    async def revoke(self, worker_id: str) -> int:
        """Deletes the worker and its token at once; its leases go back without using an attempt.

        Returns the number of leases released.
        """
        key = self.keys.worker(worker_id)
        record = cast(dict[str, str], await self.redis.hgetall(key))
        if not record:
            raise errors.WorkerNotFound("no such worker", worker_id=worker_id)
        await self._changed(worker_id)  # claims under way read the record after this
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.token(record.get("token_digest", "")), key)
            pipe.zrem(self.keys.workers, worker_id)
            pipe.hdel(self.keys.worker_names, record.get("name", ""))
            await pipe.execute()
        await self._changed(worker_id)
        return await self._release_leases_of(worker_id)

    async def _changed(self, worker_id: str) -> None:
        await self._announce(f"worker {worker_id}")

    async def _announce(self, change: str) -> None:
        """Every API process forgets its cached tokens of the change at once."""
        if self.tokens is not None:
            await self.tokens.announce(change)
        else:
            await self.redis.publish(auth_channel(self.keys.namespace), change)

    async def _release_leases_of(self, worker_id: str, granted_before_ms: int | None = None
                                 ) -> int:
        """Releases the worker's leases (those granted before ``granted_before_ms`` if given)."""
        released = 0
        for queue in await self.scheduler.queues():
            q = self.scheduler.queue_keys(queue)
            job_ids = cast(list[str], await self.redis.zrange(q.leases, 0, -1))
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hmget(q.job(job_id), ["worker_id", "lease_id", "lease_granted_at_ms"])
                owners = cast(list[list[str | None]], await pipe.execute())
            for owner, lease_id, granted in owners:
                if granted_before_ms is not None and int(granted or 0) >= granted_before_ms:
                    continue
                if owner == worker_id and lease_id:
                    try:
                        await self.scheduler.release(lease_id, worker_id)
                        released += 1
                    except errors.LeaseLost:
                        pass  # it ended on its own meanwhile
        return released

    async def sweep(self, now_ms: int | None = None) -> int:
        """Marks silent workers offline and forgets those silent past retention (with their
        name and token); returns how many were marked offline."""
        marked, removed, offset = 0, 0, 0
        while offset >= 0:
            reply = await self.scripts.sweep_workers(self.keys, self.offline_ms,
                                                     self.retention_ms, offset, SWEEP_BATCH,
                                                     now_ms)
            marked += int(reply[1])
            removed += int(reply[2])
            offset = int(reply[3])
        if removed:
            log.info("workers_removed", count=removed)
            await self._announce("all")
        return marked


def _json(value: str | None) -> dict[str, JsonValue]:
    parsed = orjson.loads(value) if value else {}
    return parsed if isinstance(parsed, dict) else {}


def _worker(record: dict[str, str], held: Held) -> Worker:
    """The worker as its record says, idle or busy by the leases it holds (``held``)."""
    status = WorkerStatus(record.get("status", "offline"))
    if status == WorkerStatus.ONLINE:
        status = WorkerStatus.BUSY if held else WorkerStatus.IDLE
    return Worker(
        worker_id=record["worker_id"],
        name=record.get("name") or record["worker_id"],
        labels=orjson.loads(record.get("labels") or "[]"),
        version=record.get("version") or None,
        status=status,
        current_job=max(held)[1] if held else None,
        registered_at_ms=int(record["registered_at_ms"]),
        last_heartbeat_ms=int(record["last_heartbeat_ms"]),
        running_jobs=len(held),
        metadata=_json(record.get("metadata")),
        resource_usage=_json(record.get("resource_usage")),
    )
