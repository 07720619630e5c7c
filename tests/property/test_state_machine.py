"""Random operation sequences against a reference model: nothing lost, one live lease per job."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import redis.asyncio as aioredis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from leasehold.scheduler import errors
from leasehold.scheduler.codec import ms
from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.keys import label_set_id
from leasehold.scheduler.models import (
    ExponentialBackoff,
    ExponentialParams,
    FailOutcome,
    Finished,
    FixedBackoff,
    FixedParams,
    Heartbeat,
    JobSpec,
    JobStatus,
    RetryPolicy,
)
from leasehold.scheduler.reaper import Reaper

T = TypeVar("T")
ErrorType = type[errors.SchedulerError]

T0 = 1_700_000_000_000
MAX_LIVE_JOBS = 6  # queued or running at once, so claims find work and sets stay small
MAX_JOBS = 24
DEFAULT_LEASE_MS = 30_000
DEFAULT_RESULT_TTL_MS = 7 * 86_400_000
QUEUE = "default"

LABEL_SETS: list[list[str]] = [[], ["gpu"], ["linux"], ["gpu", "linux"]]
LSIDS = sorted({label_set_id(labels) for labels in LABEL_SETS})
WORKERS: dict[str, frozenset[str]] = {
    "w-plain": frozenset(),
    "w-gpu": frozenset({"gpu"}),
    "w-linux": frozenset({"linux"}),
    "w-both": frozenset({"gpu", "linux"}),
}
POLICIES = [
    RetryPolicy(max_retries=0),
    RetryPolicy(max_retries=2),
    RetryPolicy(max_retries=1, backoff=FixedBackoff(Fixed=FixedParams(delay_secs=0))),
    RetryPolicy(max_retries=3, backoff=FixedBackoff(Fixed=FixedParams(delay_secs=1.5))),
    RetryPolicy(
        max_retries=3,
        backoff=ExponentialBackoff(Exponential=ExponentialParams(base_secs=0.5, max_secs=2)),
    ),
    RetryPolicy(
        max_retries=2,
        backoff=ExponentialBackoff(Exponential=ExponentialParams(base_secs=1, max_secs=4)),
        jitter=0.5,
    ),
]
CLAIM_TTLS: list[float | None] = [None, 1.0, 2.5]
RECENT = st.integers(0, 5)
LEASE_OPS = ["heartbeat", "complete", "fail", "release", "intruder"]

job_specs = st.builds(
    JobSpec,
    priority=st.sampled_from([0, 50, 100]),
    required_labels=st.sampled_from(LABEL_SETS),
    retry_policy=st.sampled_from(POLICIES),
    lease_ttl_secs=st.sampled_from([None, 1.0, 2.0, 5.0]),
    timeout_secs=st.sampled_from([None, 3.0]),
    delay_secs=st.sampled_from([None, 0.0, 1.0]),
    result_ttl_secs=st.sampled_from([None, 5.0]),
)


@dataclass
class ModelJob:
    """What the reference model believes about one job."""

    id: str
    spec: JobSpec
    seq: int
    status: JobStatus = JobStatus.QUEUED
    place: str = "ready"  # ready | delayed | leases | done | purged
    score: int = 0  # delayed: due time; leases: lease deadline; done: purge time
    due_range: tuple[int, int] | None = None  # a jittered due time not yet read back
    attempt: int = 0
    error: str | None = None
    lease_id: str | None = None
    lease_state: str | None = None
    lease_ttl_ms: int = 0
    timeout_at: int = 0
    started_at: int = 0
    last_reply: tuple[str, str, Any] | None = None  # (call, lease id, its reply) that finished

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(self.spec.required_labels)

    def expected_place(self) -> tuple[Any, ...] | None:
        if self.place == "purged":
            return None
        if self.place == "ready":
            return ("ready", label_set_id(self.spec.required_labels), self.seq, self.spec.priority)
        return (self.place, self.score)


@dataclass(frozen=True)
class LeaseRef:
    lease_id: str
    job_id: str
    worker_id: str


def backoff_bounds(policy: RetryPolicy, retry_number: int) -> tuple[int, int]:
    """The least and greatest backoff (ms) SPEC §5 allows for this retry."""
    delay = 0
    if isinstance(policy.backoff, FixedBackoff):
        delay = ms(policy.backoff.Fixed.delay_secs)
    elif isinstance(policy.backoff, ExponentialBackoff):
        params = policy.backoff.Exponential
        delay = min(ms(params.base_secs) * 2 ** (retry_number - 1), ms(params.max_secs))
    if policy.jitter > 0 and delay > 0:
        return math.floor(delay * (1 - policy.jitter)), delay
    return delay, delay


class Model:
    """A pure-Python scheduler for one queue, clocked by ``now``."""

    def __init__(self) -> None:
        self.now = T0
        self.seq = 0
        self.jobs: dict[str, ModelJob] = {}
        self.stats: Counter[str] = Counter()
        self.events: list[tuple[str, str, str, int]] = []

    def recent(self, age: int) -> ModelJob:
        """The job submitted ``age`` submissions ago (wrapping), so shrinking keeps it stable."""
        jobs = list(self.jobs.values())
        return jobs[-1 - age % len(jobs)]

    def live(self) -> int:
        return sum(not job.status.terminal for job in self.jobs.values())

    def _emit(self, job: ModelJob, frm: str, to: str) -> None:
        self.events.append((job.id, frm, to, job.attempt))

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def enqueue(self, job_id: str, spec: JobSpec) -> None:
        job = ModelJob(id=job_id, spec=spec, seq=self._next_seq())
        delay = ms(spec.delay_secs) if spec.delay_secs else 0
        if delay > 0:
            job.place, job.score = "delayed", self.now + delay
        self.jobs[job_id] = job
        self.stats["submitted"] += 1
        self._emit(job, "", "queued")

    def _promote(self) -> int:
        due = [j for j in self.jobs.values() if j.place == "delayed" and j.score <= self.now]
        for job in due:
            job.place, job.score = "ready", 0
        return len(due)

    def claimable(self, labels: frozenset[str], max_jobs: int) -> list[ModelJob]:
        self._promote()
        ready = [j for j in self.jobs.values() if j.place == "ready" and j.labels <= labels]
        return sorted(ready, key=lambda j: (j.spec.priority, j.seq))[:max_jobs]

    def next_due(self) -> int | None:
        return min((j.score for j in self.jobs.values() if j.place == "delayed"), default=None)

    def grant(self, job: ModelJob, lease_id: str, ttl_ms: int | None) -> None:
        spec = job.spec
        ttl = ttl_ms or (ms(spec.lease_ttl_secs) if spec.lease_ttl_secs else DEFAULT_LEASE_MS)
        job.timeout_at = self.now + ms(spec.timeout_secs) if spec.timeout_secs else 0
        job.started_at = self.now
        deadline = self.now + ttl
        if job.timeout_at:
            deadline = min(deadline, job.timeout_at)
        job.status, job.place, job.score = JobStatus.RUNNING, "leases", deadline
        job.lease_id, job.lease_state, job.lease_ttl_ms = lease_id, "active", ttl
        self.stats["claimed"] += 1
        self._emit(job, "queued", "running")

    def verdict(self, lease: LeaseRef) -> ErrorType | None:
        """The error a call with ``lease`` must get now, or None when the lease may act."""
        job = self.jobs[lease.job_id]
        if job.place == "purged":
            return errors.LeaseNotFound
        if job.lease_id != lease.lease_id:
            return errors.LeaseSuperseded
        return {
            "active": errors.LeaseExpired if self.now >= job.score else None,
            "expired": errors.LeaseExpired,
            "cancelled": errors.JobCancelled,
            "released": errors.LeaseNotFound,
        }.get(job.lease_state or "", errors.JobFinished)

    def replay(self, lease: LeaseRef, call: str) -> Any | None:
        """The reply a finishing call gets again when the same lease made it last: kept while
        the job lives, and after it ended while the lease that ended it is its last."""
        job = self.jobs[lease.job_id]
        if job.place == "purged" or job.last_reply is None:
            return None
        if job.last_reply[:2] != (call, lease.lease_id):
            return None
        if job.status.terminal:  # kept only when this lease's call is what ended the job
            ended_it = call == "complete" or (call == "fail" and not job.last_reply[2].will_retry)
            if job.lease_id != lease.lease_id or not ended_it:
                return None
        return job.last_reply[2]

    def heartbeat(self, job: ModelJob, ttl_ms: int | None) -> None:
        ttl = ttl_ms or job.lease_ttl_ms
        deadline = self.now + ttl
        if job.timeout_at:
            deadline = min(deadline, job.timeout_at)
        job.score, job.lease_ttl_ms = deadline, ttl

    def _finish(self, job: ModelJob, status: JobStatus, frm: str) -> None:
        ttl = ms(job.spec.result_ttl_secs) if job.spec.result_ttl_secs else DEFAULT_RESULT_TTL_MS
        job.status, job.place, job.score = status, "done", self.now + ttl
        self.stats[f"finished:{status}"] += 1
        self.stats[f"count:{status}"] += 1
        self._emit(job, frm, status)

    def complete(self, job: ModelJob) -> None:
        job.lease_state = "completed"
        self._finish(job, JobStatus.SUCCESS, "running")

    def fail(self, job: ModelJob, error: str, retryable: bool) -> tuple[int, int] | None:
        job.lease_state = "failed"
        if retryable:
            return self._retry_or_fail(job, error)
        job.error = error
        self._finish(job, JobStatus.FAILURE, "running")
        return None

    def _retry_or_fail(self, job: ModelJob, error: str) -> tuple[int, int] | None:
        """Consumes an attempt; returns the window of the retry's due time, None when failed."""
        job.error = error
        if job.attempt >= job.spec.retry_policy.max_retries:
            self._finish(job, JobStatus.FAILURE, "running")
            return None
        job.attempt += 1
        lo, hi = backoff_bounds(job.spec.retry_policy, job.attempt)
        assert lo > 0 or hi == 0, "a jittered delay of 0 would change the job's place"
        job.status, job.seq = JobStatus.QUEUED, self._next_seq()
        if hi > 0:
            job.place, job.score = "delayed", self.now + hi
            job.due_range = (self.now + lo, self.now + hi) if lo != hi else None
        else:
            job.place, job.score = "ready", 0
        self.stats["retried"] += 1
        self._emit(job, "running", "queued")
        return self.now + lo, self.now + hi

    def release(self, job: ModelJob) -> None:
        job.status, job.place, job.score, job.lease_state = JobStatus.QUEUED, "ready", 0, "released"
        self._emit(job, "running", "queued")

    def cancel(self, job: ModelJob) -> JobStatus | ErrorType:
        if job.place == "purged":
            return errors.JobNotFound
        previous = job.status
        if previous.terminal:
            return errors.JobFinished
        if previous is JobStatus.RUNNING:
            job.lease_state = "cancelled"
        self._finish(job, JobStatus.CANCELLED, previous)
        return previous

    def reap(self) -> tuple[int, int, int]:
        expiring = [j for j in self.jobs.values() if j.place == "leases" and j.score <= self.now]
        for job in sorted(expiring, key=lambda j: (j.score, j.id)):
            timed_out = job.timeout_at and job.score >= job.timeout_at  # what ended it
            job.lease_state = "expired"
            self.stats["leases_expired"] += 1
            self._retry_or_fail(job, "timeout" if timed_out else "lease_expired")
        promoted = self._promote()
        purging = [j for j in self.jobs.values() if j.place == "done" and j.score <= self.now]
        for job in purging:
            self.stats[f"count:{job.status}"] -= 1
            job.place = "purged"
        return len(expiring), promoted, len(purging)


class SchedulerMachine(RuleBasedStateMachine):
    """Each example gets its own event loop, client and namespace on the session's redis-server."""

    redis_url: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = aioredis.Redis.from_url(self.redis_url, decode_responses=True)
        namespace = f"sm{uuid.uuid4().hex[:10]}"
        settings = Settings(redis_url=self.redis_url, namespace=namespace,
                            default_lease_ttl_secs=DEFAULT_LEASE_MS / 1000,
                            result_ttl_secs=DEFAULT_RESULT_TTL_MS / 1000)
        self.sched = Scheduler(self.redis, settings)
        self.run(self.sched.start())
        self.model = Model()
        self.issued: list[LeaseRef] = []
        self.terminal_seen: dict[str, JobStatus] = {}
        self.last_event_id = "-"
        self.events_seen = 0

    def teardown(self) -> None:
        self.run(self.redis.aclose())
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def attempt(self, coro: Coroutine[Any, Any, T]) -> T | errors.SchedulerError:
        try:
            return self.run(coro)
        except errors.SchedulerError as exc:
            return exc

    # -- rules ---------------------------------------------------------------------------------

    @initialize(specs=st.lists(job_specs, min_size=1, max_size=4), claims=st.integers(0, 3))
    def seed(self, specs: list[JobSpec], claims: int) -> None:
        """Every example starts with work (and often leases), so none is spent on an empty queue."""
        self.submit(specs)
        if claims:
            self.claim("w-both", claims, None)

    @precondition(lambda self: self.model.live() < MAX_LIVE_JOBS
                  and len(self.model.jobs) < MAX_JOBS)
    @rule(specs=st.lists(job_specs, min_size=1, max_size=2))
    def submit(self, specs: list[JobSpec]) -> None:
        submitted = self.run(self.sched.submit_bulk(specs, now_ms=self.model.now))
        for spec, result in zip(specs, submitted, strict=True):
            assert not result.deduplicated
            self.model.enqueue(result.job.id, spec)

    @rule(worker=st.sampled_from([*sorted(WORKERS), "w-both", "w-both"]),
          max_jobs=st.integers(1, 3), ttl=st.sampled_from(CLAIM_TTLS))
    def claim(self, worker: str, max_jobs: int, ttl: float | None) -> None:
        expected = self.model.claimable(WORKERS[worker], max_jobs)
        batch = self.run(self.sched.claim(worker, sorted(WORKERS[worker]), lease_ttl_secs=ttl,
                                          max_jobs=max_jobs, now_ms=self.model.now))
        assert [c.job.id for c in batch.claims] == [j.id for j in expected]
        assert batch.next_due_ms == (None if expected else self.model.next_due())
        refs = []
        for claim, job in zip(batch.claims, expected, strict=True):
            self.model.grant(job, claim.lease.lease_id, ms(ttl) if ttl is not None else None)
            assert claim.job.status is JobStatus.RUNNING and claim.job.attempt == job.attempt
            assert (claim.lease.worker_id, claim.lease.attempt) == (worker, job.attempt)
            assert claim.lease.expires_at_ms == job.score
            assert claim.lease.granted_at_ms == self.model.now
            refs.append(LeaseRef(claim.lease.lease_id, job.id, worker))
        self.issued += refs

    @precondition(lambda self: self.issued)
    @rule(age=RECENT, op=st.sampled_from(LEASE_OPS), ttl=st.sampled_from(CLAIM_TTLS),
          retryable=st.booleans())
    def lease_call(self, age: int, op: str, ttl: float | None, retryable: bool) -> None:
        """Every lease-bound call, on a recent lease (0 = the newest; older ones are likelier
        stale). One rule rather than five, so that more examples mix them."""
        lease = self.issued[-1 - age % len(self.issued)]
        if op == "heartbeat":
            self._heartbeat(lease, ttl)
        elif op == "complete":
            self._complete(lease)
        elif op == "fail":
            self._fail(lease, retryable)
        elif op == "release":
            self._release(lease)
        else:
            self._intrude(lease)

    def _heartbeat(self, lease: LeaseRef, ttl: float | None) -> None:
        job, verdict = self.model.jobs[lease.job_id], self.model.verdict(lease)
        result = self.attempt(self.sched.heartbeat(lease.lease_id, lease.worker_id, ttl,
                                                   now_ms=self.model.now))
        if verdict is None:
            self.model.heartbeat(job, ms(ttl) if ttl is not None else None)
            assert isinstance(result, Heartbeat) and not result.cancelled
            assert result.lease.expires_at_ms == job.score
        elif verdict is errors.JobCancelled:
            assert isinstance(result, Heartbeat) and result.cancelled
        else:
            assert type(result) is verdict

    def _complete(self, lease: LeaseRef) -> None:
        verdict = self.model.verdict(lease)
        result = self.attempt(self.sched.complete(lease.lease_id, lease.worker_id,
                                                  {"ok": True}, now_ms=self.model.now))
        if verdict is None:
            job = self.model.jobs[lease.job_id]
            run_ms = self.model.now - job.started_at
            assert result == Finished(run_ms=run_ms), "the attempt's run time"
            self.model.complete(job)
            job.last_reply = ("complete", lease.lease_id, run_ms)
        elif self.model.replay(lease, "complete") is not None:
            assert result == Finished(run_ms=0, replayed=True)
        else:
            assert type(result) is verdict

    def _fail(self, lease: LeaseRef, retryable: bool) -> None:
        job, verdict = self.model.jobs[lease.job_id], self.model.verdict(lease)
        result = self.attempt(self.sched.fail(lease.lease_id, "boom", lease.worker_id,
                                              retryable=retryable, now_ms=self.model.now))
        if verdict is not None:
            again = self.model.replay(lease, "fail")
            if again is not None:
                assert result == again.model_copy(update={"replayed": True, "run_ms": 0})
            else:
                assert type(result) is verdict
            return
        assert isinstance(result, FailOutcome) and not result.replayed
        assert result.run_ms == self.model.now - job.started_at
        window = self.model.fail(job, "boom", retryable)
        assert result.will_retry == (window is not None)
        job.last_reply = ("fail", lease.lease_id, result)
        if window is not None:
            assert result.retry_at_ms is not None
            assert window[0] <= result.retry_at_ms <= window[1]
            if job.place == "delayed":
                job.score, job.due_range = result.retry_at_ms, None

    def _release(self, lease: LeaseRef) -> None:
        verdict = self.model.verdict(lease)
        result = self.attempt(self.sched.release(lease.lease_id, lease.worker_id,
                                                 now_ms=self.model.now))
        if verdict is None:
            assert result is False
            self.model.release(self.model.jobs[lease.job_id])
            self.model.jobs[lease.job_id].last_reply = ("release", lease.lease_id, True)
        elif self.model.replay(lease, "release") is not None:
            assert result is True  # the first release's reply, again
        else:
            assert type(result) is verdict

    def _intrude(self, lease: LeaseRef) -> None:
        """Another worker presenting this lease is refused, and nothing changes."""
        job = self.model.jobs[lease.job_id]
        expected: ErrorType = errors.NotLeaseOwner
        if job.place == "purged":
            expected = errors.LeaseNotFound
        elif job.lease_id != lease.lease_id:
            expected = errors.LeaseSuperseded
        result = self.attempt(self.sched.complete(lease.lease_id, "intruder",
                                                  now_ms=self.model.now))
        assert type(result) is expected

    @rule(age=RECENT)
    def cancel(self, age: int) -> None:
        job = self.model.recent(age)
        expected = self.model.cancel(job)
        result = self.attempt(self.sched.cancel(job.id, now_ms=self.model.now))
        if isinstance(expected, JobStatus):
            assert result == expected
        else:
            assert type(result) is expected

    @rule(step_ms=st.integers(0, 3000), reap=st.booleans())
    def tick(self, step_ms: int, reap: bool) -> None:
        self.model.now += step_ms
        if reap:
            self._reap()

    @rule(age=RECENT, offset=st.sampled_from([-1, 0, 1]), reap=st.booleans())
    def tick_to_deadline(self, age: int, offset: int, reap: bool) -> None:
        """Lands on a lease deadline or due time exactly, where off-by-one bugs live."""
        job = self.model.recent(age)
        if job.place in ("leases", "delayed"):
            self.model.now = max(self.model.now, job.score + offset)
        if reap:
            self._reap()

    def _reap(self) -> None:
        report = self.run(Reaper(self.sched).run_once(now_ms=self.model.now))
        assert (report.expired, report.promoted, report.purged) == self.model.reap()

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def redis_matches_model(self) -> None:
        self.run(self._check_places())
        self.run(self._check_jobs())
        self.run(self._check_events())
        self.run(self._check_stale_leases())

    async def _check_places(self) -> None:
        """Every job is in exactly the one place the model says; no set holds anything else."""
        q = self.sched.queue_keys(QUEUE)
        async with self.redis.pipeline(transaction=False) as pipe:
            for lsid in LSIDS:
                pipe.zrange(q.ready(lsid), 0, -1, withscores=True)
            for key in (q.delayed, q.leases, q.done):
                pipe.zrange(key, 0, -1, withscores=True)
            pipe.zrange(q.index, 0, -1)
            pipe.hgetall(q.stats)
            pipe.hkeys(q.labelsets)
            *sets, index, stats, labelsets = await pipe.execute()
        actual: dict[str, list[tuple[Any, ...]]] = {}
        for lsid, members in zip(LSIDS, sets[:len(LSIDS)], strict=True):
            for member, score in members:
                seq, _, job_id = member.partition("|")
                actual.setdefault(job_id, []).append(("ready", lsid, int(seq), int(score)))
            if members:
                assert lsid in labelsets, "a ready job no claim can see"
        for name, members in zip(("delayed", "leases", "done"), sets[len(LSIDS):], strict=True):
            for job_id, score in members:
                self._resolve_jitter(name, job_id, int(score))
                actual.setdefault(job_id, []).append((name, int(score)))
        expected = {
            job.id: [place] for job in self.model.jobs.values()
            if (place := job.expected_place()) is not None
        }
        assert actual == expected
        assert set(index) == set(expected)
        assert set(labelsets) <= set(LSIDS)
        counters = {name: int(value) for name, value in stats.items() if int(value)}
        assert counters == {name: value for name, value in self.model.stats.items() if value}

    def _resolve_jitter(self, place: str, job_id: str, score: int) -> None:
        job = self.model.jobs.get(job_id)
        if place == "delayed" and job is not None and job.due_range is not None:
            assert job.due_range[0] <= score <= job.due_range[1]
            job.score, job.due_range = score, None

    async def _check_jobs(self) -> None:
        """Scheduler.get agrees with the model; terminal statuses never change."""
        jobs = list(self.model.jobs.values())
        replies = await asyncio.gather(*(self.sched.get(j.id) for j in jobs),
                                       return_exceptions=True)
        for job, reply in zip(jobs, replies, strict=True):
            if job.place == "purged":
                assert isinstance(reply, errors.JobNotFound)
                continue
            assert not isinstance(reply, BaseException), reply
            got = (reply.status, reply.attempt, reply.error)
            assert got == (job.status, job.attempt, job.error), (got, job)
            assert reply.attempt <= job.spec.retry_policy.max_retries
            seen = self.terminal_seen.get(job.id)
            assert seen is None or reply.status is seen, "a terminal status changed"
            if reply.status.terminal:
                self.terminal_seen[job.id] = reply.status

    async def _check_events(self) -> None:
        """The audit stream records exactly the model's transitions, in order."""
        entries = await self.sched.events(QUEUE, after=self.last_event_id)
        got = [(e["job"], e["from"], e["to"], e["attempt"]) for e in entries]
        assert got == self.model.events[self.events_seen:]
        self.events_seen = len(self.model.events)
        if entries:
            self.last_event_id = entries[-1]["id"]

    async def _check_stale_leases(self) -> None:
        """Every lease but a job's current, live one is refused (a refused heartbeat writes
        nothing, so probing is safe); a cancelled job's lease learns it from the heartbeat."""
        stale = [(ref, v) for ref in self.issued if (v := self.model.verdict(ref)) is not None]
        live = Counter(ref.job_id for ref in self.issued if self.model.verdict(ref) is None)
        assert all(n == 1 for n in live.values())
        replies = await asyncio.gather(
            *(self.sched.heartbeat(ref.lease_id, ref.worker_id, now_ms=self.model.now)
              for ref, _ in stale),
            return_exceptions=True,
        )
        for (ref, verdict), reply in zip(stale, replies, strict=True):
            if verdict is errors.JobCancelled:
                assert isinstance(reply, Heartbeat) and reply.cancelled, ref
            else:
                assert type(reply) is verdict, (ref, verdict, reply)


def test_scheduler_matches_reference_model(redis_url: str) -> None:
    SchedulerMachine.redis_url = redis_url
    run_state_machine_as_test(
        SchedulerMachine,
        settings=settings(
            max_examples=50, stateful_step_count=40, deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            # explain traces every line of redis-py while replaying: minutes, for no insight here
            phases=[phase for phase in Phase if phase is not Phase.explain],
        ),
    )
