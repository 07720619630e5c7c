"""``Scheduler``: the state changes the API calls (submit, claim, lease calls, cancel, queues)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from leasehold.scheduler import codec, errors
from leasehold.scheduler.config import Settings
from leasehold.scheduler.keys import (
    QueueKeys,
    job_of_lease,
    label_set_id,
    new_job_id,
    new_token,
    queue_of_job,
)
from leasehold.scheduler.models import (
    Claim,
    FailOutcome,
    Finished,
    Heartbeat,
    Job,
    JobSpec,
    JobStatus,
    QueueLimits,
    QueueStats,
    Submitted,
)
from leasehold.scheduler.rawjson import RawJson
from leasehold.scheduler.reads import SchedulerReads
from leasehold.scheduler.replies import fail_outcome, finished_of, heartbeat_of
from leasehold.scheduler.scripts import Reply, Scripts, raise_for
from leasehold.scheduler.secrets import RECORD_FIELD, Sealer, SecretStore

MAX_CLAIM = 100
MAX_BULK = 1000
WAKE_ALL = 1 << 30
FULL_RECHECK_MS = 500  # a queue at max_running is checked again this soon by long-polls
QUEUE_REFRESH_SECS = 1.0


@dataclass
class ClaimBatch:
    """Jobs leased by one claim call, and when to look again if there were none."""

    claims: list[Claim] = field(default_factory=list)
    next_due_ms: int | None = None  # Redis time when a job (or a rate window) is next due
    now_ms: int | None = None  # Redis time of the claim
    paused: bool = False
    # leased jobs whose secrets this process cannot open (no key, or a key no longer set)
    unreadable: list[tuple[Claim, errors.SchedulerError]] = field(default_factory=list)


class Scheduler(SchedulerReads):
    """The use cases: every state change is one Lua script in one round trip."""

    def __init__(self, redis: Redis, settings: Settings | None = None) -> None:
        super().__init__(redis, settings)
        self.scripts = Scripts(redis, self.settings.events_maxlen)
        # queue -> when this process last added it to the registry (time.monotonic())
        self._known_queues: dict[str, float] = {}
        # Told the duration (s) and result of every claim call; the API feeds its histograms.
        self.claim_observer: Callable[[float, ClaimBatch], None] | None = None
        self.secrets = SecretStore(redis, self.keys.global_prefix,
                                   Sealer.from_settings(self.settings))

    async def start(self) -> None:
        await self.scripts.load()

    # -- producers -----------------------------------------------------------------------------

    async def submit(self, spec: JobSpec, now_ms: int | None = None,
                     extra_fields: dict[str, str] | None = None) -> Submitted:
        """``extra_fields``: more job record fields, stored with the job (a webhook's URL)."""
        return (await self.submit_bulk([spec], now_ms, extra_fields))[0]

    async def submit_bulk(self, specs: list[JobSpec], now_ms: int | None = None,
                          extra_fields: dict[str, str] | None = None,
                          schedule: str = "") -> list[Submitted]:
        """Stores all jobs or none; one request's jobs share a queue so the write is atomic.
        ``extra_fields``: more job record fields (a webhook's URL). ``schedule`` ("<schedule id>
        <occurrence ms>"): stored only if that occurrence is later than the schedule's last one
        (else nothing is stored and [] returned)."""
        if not specs:
            return []
        if len(specs) > MAX_BULK:
            raise errors.InvalidArgument(f"at most {MAX_BULK} jobs per request")
        queues = {spec.queue for spec in specs}
        if len(queues) > 1:
            raise errors.InvalidArgument("all jobs of one bulk request must share a queue")
        queue = specs[0].queue
        sealed = [[RECORD_FIELD, await self.secrets.sealed_for(queue, spec.secrets)]
                  if spec.secrets else [] for spec in specs]  # refused before anything is written
        await self.remember_queue(queue)
        extra = [item for kv in (extra_fields or {}).items() for item in kv]
        encoded = [[*self._encode(spec, new_job_id(queue)), *extra, *more]
                   for spec, more in zip(specs, sealed, strict=True)]
        if schedule:
            encoded = [[*job, "schedule", schedule] for job in encoded]
        reply = await self.scripts.enqueue(self.queue_keys(queue), encoded, now_ms,
                                           schedule=schedule)
        if reply[0] == "RATE_LIMITED":
            wait_ms = max(0, int(reply[1]) - int(reply[2]))
            raise errors.RateLimited(f"queue {queue} is over its submit_rate; retry later",
                                     retry_after_secs=max(1, -(-wait_ms // 1000)), queue=queue)
        if reply[0] == "SCHEDULE_DONE":
            return []
        raise_for(reply)
        now = int(reply[1])
        results: list[Submitted] = []
        for spec, job_args, (job_id, dedup) in zip(
            specs, encoded, zip(reply[2::2], reply[3::2], strict=True), strict=True
        ):
            if int(dedup):
                results.append(Submitted(job=await self.get(job_id), deduplicated=True))
            else:
                job = self._fresh_job(spec, job_args, now)
                results.append(Submitted(job=job, deduplicated=False))
        return results

    def _encode(self, spec: JobSpec, job_id: str) -> list[str]:
        labels = sorted(set(spec.required_labels))
        delay_ms = codec.ms(spec.delay_secs) if spec.delay_secs else 0
        default_ttl = codec.ms(self.settings.result_ttl_secs)
        pairs = [item for kv in codec.spec_fields(spec, job_id, default_ttl).items() for item in kv]
        if spec.verification is not None:
            pairs += ["verify_count", str(spec.verification.count),
                      "verify_max_votes", str(spec.verification.vote_cap)]
        return [job_id, label_set_id(labels), codec.dumps(labels), str(spec.priority),
                str(spec.run_at_ms or 0), str(delay_ms), spec.unique_key or "", "ready", *pairs]

    @staticmethod
    def _fresh_job(spec: JobSpec, job_args: list[str], now: int) -> Job:
        """The stored job, rebuilt from what was sent, without a second round trip."""
        record = codec.pairs(job_args[8:])
        due = max(spec.run_at_ms or 0, now + int(job_args[5]))
        record.update(id=job_args[0], labels=job_args[2], priority=job_args[3],
                      unique_key=job_args[6], status="queued", attempt="0",
                      enqueued_at_ms=str(now), delayed_until_ms=str(due if due > now else 0))
        return codec.job_from_record(record)

    async def remember_queue(self, queue: str) -> None:
        """Adds the queue to the queue index with its last activity. Added again at most every
        ``QUEUE_REFRESH_SECS``, not once per process: a Redis that lost its data (restart
        without persistence, failover), or a reaper that forgot the queue while it was idle,
        must learn it again, or no reaper would ever expire its leases. Scores only grow (GT),
        so a reaper never forgets a queue some process touched after the reaper looked."""
        now = time.monotonic()
        if now - self._known_queues.get(queue, -QUEUE_REFRESH_SECS) >= QUEUE_REFRESH_SECS:
            await self.redis.zadd(self.keys.queues, {queue: int(time.time() * 1000)}, gt=True)
            self._known_queues[queue] = now

    async def cancel(self, job_id: str, now_ms: int | None = None) -> JobStatus:
        """Cancels a queued or running job; returns the status it had."""
        queue = self._queue_or_404(job_id)
        reply = await self.scripts.cancel(self.queue_keys(queue), job_id, now_ms)
        raise_for(reply, job_id=job_id)
        return JobStatus(reply[1])

    async def retry(self, job_id: str, now_ms: int | None = None) -> JobStatus:
        """Sends a failed or cancelled job back to the queue with a fresh attempt budget."""
        queue = self._queue_or_404(job_id)
        reply = await self.scripts.retry(self.queue_keys(queue), job_id, now_ms)
        raise_for(reply, job_id=job_id)
        return JobStatus(reply[1])

    # -- workers -------------------------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        labels: list[str],
        queues: list[str] | None = None,
        lease_ttl_secs: float | None = None,
        max_jobs: int = 1,
        now_ms: int | None = None,
    ) -> ClaimBatch:
        """Leases up to ``max_jobs`` jobs, trying ``queues`` in order (one script per queue)."""
        if not 1 <= max_jobs <= MAX_CLAIM:
            raise errors.InvalidArgument(f"max_jobs must be 1..{MAX_CLAIM}")
        labels_json = codec.dumps(sorted(set(labels)))
        ttl_ms = codec.ms(lease_ttl_secs) if lease_ttl_secs is not None else None
        batch, started = ClaimBatch(), time.perf_counter()
        for queue in queues or ["default"]:
            wanted = max_jobs - len(batch.claims)
            if wanted <= 0:
                break
            tokens = [new_token() for _ in range(wanted)]
            reply = await self.scripts.claim(
                self.queue_keys(queue), worker_id, labels_json, ttl_ms, tokens,
                self.settings.reap_batch, now_ms,
                codec.ms(self.settings.default_lease_ttl_secs))
            self._read_claim(reply, batch)
        for claim, exc in batch.unreadable:
            with contextlib.suppress(errors.LeaseLost):
                await self.fail(claim.lease.lease_id, exc.message, worker_id)
        if self.claim_observer is not None:
            self.claim_observer(time.perf_counter() - started, batch)
        return batch

    def _read_claim(self, reply: Reply, batch: ClaimBatch) -> None:
        status = reply[0]
        if status == "OK":
            for flat in reply[1:]:
                record = codec.pairs(flat)
                claim = Claim(job=codec.job_from_record(record),
                              lease=codec.lease_from_record(record))
                if record.get(RECORD_FIELD):
                    try:
                        claim.secrets = self.secrets.open_record(record[RECORD_FIELD])
                    except errors.SchedulerError as exc:
                        batch.unreadable.append((claim, exc))
                        continue
                    self.secrets.remember_masks(claim.lease.lease_id, claim.secrets)
                else:  # nothing to mask in this lease's logs or errors: no read to learn it
                    self.secrets.remember_masks(claim.lease.lease_id, {})
                batch.claims.append(claim)
            return
        batch.now_ms = int(reply[2])
        batch.paused = batch.paused or status == "PAUSED"
        if status == "FULL":
            due = batch.now_ms + FULL_RECHECK_MS
        elif reply[1] != "":
            due = int(reply[1])
        else:
            return
        if batch.next_due_ms is None or due < batch.next_due_ms:
            batch.next_due_ms = due

    async def heartbeat(
        self,
        lease_id: str,
        worker_id: str = "",
        lease_ttl_secs: float | None = None,
        progress: int | None = None,
        message: str | None = None,
        now_ms: int | None = None,
    ) -> Heartbeat:
        job_id, q = self.lease_target(lease_id)
        ttl_ms = codec.ms(lease_ttl_secs) if lease_ttl_secs is not None else None
        reply = await self.scripts.heartbeat(q, job_id, lease_id, worker_id, ttl_ms, progress,
                                             message, now_ms)
        raise_for(reply, lease_id=lease_id)
        return heartbeat_of(reply, lease_id, job_id)

    async def complete(
        self,
        lease_id: str,
        worker_id: str = "",
        outputs: Mapping[str, Any] | RawJson | None = None,
        now_ms: int | None = None,
        verification: str | None = None,
    ) -> Finished:
        """Finishes the job with success (a quorum job: records the vote, see lib/quorum.lua).
        The same call retried by the lease that completed the job gets the first reply again
        (``replayed``), so a worker whose reply was lost learns its work was taken."""
        job_id, q = self.lease_target(lease_id)
        reply = await self.scripts.complete(q, job_id, lease_id, worker_id,
                                            codec.dumps(outputs or {}), now_ms,
                                            verification or "")
        raise_for(reply, lease_id=lease_id)
        return finished_of(reply)

    async def complete_claim(
        self, lease_id: str, worker_id: str, outputs: Mapping[str, Any] | RawJson | None,
        verification: str | None, claimer: str, labels: list[str],
        lease_ttl_secs: float | None = None, max_jobs: int = 1, now_ms: int | None = None,
    ) -> tuple[Finished, ClaimBatch]:
        """``complete``, then a claim for ``claimer`` in the lease's own queue: one script, one
        round trip. Nothing is claimed when the lease cannot complete (its error is raised)."""
        if not 1 <= max_jobs <= MAX_CLAIM:
            raise errors.InvalidArgument(f"max_jobs must be 1..{MAX_CLAIM}")
        job_id, q = self.lease_target(lease_id)
        started = time.perf_counter()
        reply = await self.scripts.complete_claim(
            q, job_id, lease_id, worker_id, codec.dumps(outputs or {}), now_ms,
            verification or "", claimer, codec.dumps(sorted(set(labels))),
            codec.ms(lease_ttl_secs) if lease_ttl_secs is not None else None,
            [new_token() for _ in range(max_jobs)], self.settings.reap_batch,
            codec.ms(self.settings.default_lease_ttl_secs))
        if not isinstance(reply[0], list):  # {status}: the lease could not complete
            raise_for(reply, lease_id=lease_id)
        batch = ClaimBatch()
        self._read_claim(reply[1], batch)
        if self.claim_observer is not None:
            self.claim_observer(time.perf_counter() - started, batch)
        return finished_of(reply[0]), batch

    async def complete_many(
        self,
        leases: Sequence[tuple[str, Mapping[str, Any] | RawJson | None]],
        worker_id: str = "",
        now_ms: int | None = None,
    ) -> dict[str, Finished | errors.SchedulerError]:
        """Completes each (lease_id, outputs) with its own complete script, fenced on its own,
        all in one round trip (a pipeline; Cluster: one call each). A lease's completion, or its
        error in its place: one lease's failure never affects another's."""
        found: dict[str, Finished | errors.SchedulerError] = {}
        calls: list[tuple[list[str], list[Any]]] = []
        sent: list[str] = []
        for lease_id, outputs in leases:
            try:
                job_id, q = self.lease_target(lease_id)
            except errors.SchedulerError as exc:
                found[lease_id] = exc
                continue
            calls.append(self.scripts.complete_call(q, job_id, lease_id, worker_id,
                                                    codec.dumps(outputs or {}), now_ms))
            sent.append(lease_id)
        replies = await self.scripts.many("complete", calls,
                                          pipeline=not self.settings.redis_cluster)
        for lease_id, reply in zip(sent, replies, strict=True):
            try:
                raise_for(reply, lease_id=lease_id)
            except errors.SchedulerError as exc:
                found[lease_id] = exc
                continue
            found[lease_id] = finished_of(reply)
        return found

    async def fail(
        self,
        lease_id: str,
        error: str,
        worker_id: str = "",
        retryable: bool = False,
        now_ms: int | None = None,
    ) -> FailOutcome:
        job_id, q = self.lease_target(lease_id)
        reply = await self.scripts.fail(q, job_id, lease_id, worker_id, error, retryable, now_ms)
        raise_for(reply, lease_id=lease_id)
        return fail_outcome(reply)

    async def release(self, lease_id: str, worker_id: str = "", now_ms: int | None = None
                      ) -> bool:
        """Hands the job back; True when this only repeats the lease's earlier release."""
        job_id, q = self.lease_target(lease_id)
        reply = await self.scripts.release(q, job_id, lease_id, worker_id, now_ms)
        raise_for(reply, lease_id=lease_id)
        return bool(reply[0] == "REPLAYED")

    def lease_target(self, lease_id: str) -> tuple[str, QueueKeys]:
        job_id = job_of_lease(lease_id)
        if job_id is None:
            raise errors.LeaseNotFound("no such lease", lease_id=lease_id)
        queue = queue_of_job(job_id)
        assert queue is not None
        return job_id, self.queue_keys(queue)

    # -- queues --------------------------------------------------------------------------------

    async def set_queue(self, queue: str, limits: QueueLimits) -> QueueStats:
        q = self.queue_keys(queue)
        await self.remember_queue(queue)
        fields: dict[str, str] = {}
        if limits.paused is not None:
            fields["paused"] = "1" if limits.paused else "0"
        if limits.max_running is not None:
            fields["max_running"] = str(limits.max_running)
        claim_rate = limits.claim_rate or limits.rate_limit
        if claim_rate is not None:
            fields["rate_limit"] = str(claim_rate.limit)
            fields["rate_per_ms"] = str(codec.ms(claim_rate.per_secs))
        if limits.submit_rate is not None:
            fields["submit_limit"] = str(limits.submit_rate.limit)
            fields["submit_per_ms"] = str(codec.ms(limits.submit_rate.per_secs))
        if fields:
            await self.redis.hset(q.meta, items=[x for kv in fields.items() for x in kv])
            await self.redis.publish(q.prefix + "ready", WAKE_ALL)  # limits may now allow claims
        return await self.queue_stats(queue)

