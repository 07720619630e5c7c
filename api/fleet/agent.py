"""``leasehold agent``: claims jobs, runs their commands, streams their logs, reports results."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import structlog

from leasehold.api.fleet.agent_process import JobProcess, read_outputs
from leasehold.api.fleet.client import (
    LeaseholdClient,
    LeaseholdError,
    LeaseLost,
    Unauthorized,
    backoff_delay,
)
from leasehold.scheduler.masking import StreamMasker, env_name, env_value, mask, masked_texts
from leasehold.scheduler.models import Claim

log = structlog.get_logger("leasehold.agent")

LOG_FLUSH_SECS = 0.5
LOG_BATCH = 500
WORKER_HEARTBEAT_SECS = 10.0
CLAIM_WAIT_SECS = 10.0


@dataclass
class AgentConfig:
    server: str
    token: str
    slots: int = 1
    labels: list[str] = field(default_factory=list)
    queues: list[str] = field(default_factory=lambda: ["default"])
    lease_ttl_secs: float = 30.0
    state_dir: Path = Path(".leasehold-agent")
    name: str | None = None
    grace_secs: float = 10.0
    drain_timeout_secs: float = 300.0
    non_retryable_exit_codes: frozenset[int] = frozenset()


@dataclass(eq=False)
class _Slot:
    """One leased job on this agent."""

    claim: Claim
    seq: int = 0
    pending: list[dict[str, Any]] = field(default_factory=list)
    process: JobProcess | None = None
    cancelled: bool = False
    lost: bool = False
    task: asyncio.Task[None] | None = None
    push_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one log push at a time
    masked: list[str] = field(default_factory=list)  # the job's secret texts, shown as ***
    maskers: dict[str, StreamMasker] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.masked = masked_texts((self.claim.secrets or {}).values())

    @property
    def lease_id(self) -> str:
        return self.claim.lease.lease_id

    def add_line(self, stream: str, line: str) -> None:
        if self.masked:
            masker = self.maskers.setdefault(stream, StreamMasker(self.masked))
            line, piece = masker.feed(line), line
            if piece and not line:
                return  # all of it may begin a secret: held until the next piece
        self.pending.append({"data": line, "stream": stream, "sequence": self.seq})
        self.seq += 1

    def end_output(self) -> None:
        """Passes on what the maskers held back: the output ended without completing a value."""
        for stream, masker in self.maskers.items():
            rest = masker.end()
            if rest:
                self.pending.append({"data": rest, "stream": stream, "sequence": self.seq})
                self.seq += 1


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.client = LeaseholdClient(config.server, config.token)
        self.worker_id = ""
        self.slots: dict[str, _Slot] = {}
        self.stopping = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._stoppers: set[asyncio.Task[None]] = set()

    # -- identity ----------------------------------------------------------------------------

    async def authenticate(self) -> None:
        """Uses the stored worker token, a given worker token, or registers with the given one."""
        state = self.config.state_dir / "worker.json"
        if state.exists():
            saved = orjson.loads(state.read_bytes())
            self.client.token, self.worker_id = saved["token"], saved["worker_id"]
            await self.client.worker_heartbeat(running_jobs=0)
            return
        if self.config.token.startswith("lhw_"):
            reply = await self.client.worker_heartbeat(running_jobs=0)
            self.worker_id = reply.worker_id or ""
            return
        name = self.config.name or f"{socket.gethostname()}-{os.getpid()}"
        registered = await self.client.register(self.config.labels, name=name,
                                                version="leasehold-agent")
        self.client.token, self.worker_id = registered.worker_token, registered.worker_id
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps({"worker_id": self.worker_id, "token": registered.worker_token}))
        log.info("agent_registered", worker_id=self.worker_id)

    # -- main loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self.authenticate()
        except BaseException:
            await self.client.close()  # no "Unclosed client session" noise after the error
            raise
        log.info("agent_started", worker_id=self.worker_id, slots=self.config.slots,
                 labels=self.config.labels, queues=self.config.queues)
        background = [asyncio.create_task(self._heartbeat_leases()),
                      asyncio.create_task(self._heartbeat_worker()),
                      asyncio.create_task(self._ship_logs())]
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._flush_logs()
            await self.client.close()
        log.info("agent_stopped", worker_id=self.worker_id)

    async def _claim_loop(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            free = self.config.slots - len(self.slots)
            if free <= 0:
                self._slot_free.clear()
                await _first(self._slot_free.wait(), self.stopping.wait())
                continue
            try:
                claims = await self._claim_unless_stopped(free)
                if claims is None:
                    break
                failures = 0
                if not claims:
                    # a drained worker's claims come back empty at once: ask rather than spin
                    await self._check_drain()
            except Unauthorized:
                raise
            except LeaseholdError as exc:
                log.warning("claim_failed", error=str(exc))
                await _first(asyncio.sleep(backoff_delay(failures, 0.5, 15)), self.stopping.wait())
                failures += 1
                continue
            for claim in claims:
                if self.stopping.is_set():
                    await self._give_back(_Slot(claim))
                else:
                    self._start(claim)

    async def _claim_unless_stopped(self, free: int) -> list[Claim] | None:
        """Claims (long-polling); a stop (SIGTERM) ends the wait at once with None."""
        claiming = asyncio.ensure_future(self.client.claim(
            self.config.labels, max_jobs=free, wait_secs=CLAIM_WAIT_SECS,
            queues=self.config.queues, lease_ttl_secs=self.config.lease_ttl_secs))
        stopped = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({claiming, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not claiming.done():
                claiming.cancel()
            await asyncio.gather(claiming, stopped, return_exceptions=True)
        if claiming.cancelled():
            return None
        return claiming.result()

    def _start(self, claim: Claim) -> None:
        slot = _Slot(claim)
        self.slots[slot.lease_id] = slot
        slot.task = asyncio.create_task(self._execute(slot))
        log.info("job_started", job_id=claim.job.id, lease_id=slot.lease_id,
                 attempt=claim.job.attempt)

    async def _drain(self) -> None:
        """Lets running jobs finish within the drain timeout, then hands the rest back."""
        tasks = [slot.task for slot in self.slots.values() if slot.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.config.drain_timeout_secs)
        for slot in list(self.slots.values()):
            slot.lost = True  # we report nothing more for it ourselves
            if slot.process is not None:
                await slot.process.stop(self.config.grace_secs)
            if slot.task is not None:
                slot.task.cancel()
                await asyncio.gather(slot.task, return_exceptions=True)
            await self._give_back(slot)

    async def _give_back(self, slot: _Slot) -> None:
        with contextlib.suppress(LeaseholdError):
            await self.client.release(slot.lease_id)
            log.info("job_released", job_id=slot.claim.job.id, lease_id=slot.lease_id)
        self.slots.pop(slot.lease_id, None)

    # -- one job -------------------------------------------------------------------------------

    async def _execute(self, slot: _Slot) -> None:
        job = slot.claim.job
        try:
            if not job.command:
                await self.client.fail(slot.lease_id, "the job has no command to run")
                return
            with tempfile.TemporaryDirectory(prefix="leasehold-") as tmp:
                outputs_path = Path(tmp) / "outputs"
                env = {**os.environ, "LEASEHOLD_JOB_ID": job.id,
                       "LEASEHOLD_ATTEMPT": str(job.attempt),
                       "LEASEHOLD_OUTPUTS": str(outputs_path)}
                for name, value in (slot.claim.secrets or {}).items():
                    env[env_name(name)] = env_value(value)
                slot.process = await JobProcess.start(job.command, env, slot.add_line)
                code = await slot.process.wait()
                slot.end_output()
                await self._flush_logs(slot)
                await self._report(slot, code, outputs_path)
        except LeaseLost as exc:
            log.warning("lease_lost", job_id=job.id, lease_id=slot.lease_id, reason=exc.code)
        except LeaseholdError as exc:
            log.error("report_failed", job_id=job.id, lease_id=slot.lease_id, error=str(exc))
        finally:
            self.slots.pop(slot.lease_id, None)
            self._slot_free.set()

    async def _report(self, slot: _Slot, code: int, outputs_path: Path) -> None:
        job = slot.claim.job
        if slot.lost or slot.cancelled:
            log.info("job_abandoned", job_id=job.id, cancelled=slot.cancelled, lost=slot.lost)
            return
        if code == 0:
            claims = await self.client.complete(slot.lease_id, read_outputs(outputs_path),
                                                next_claim=self._next_claim())
            log.info("job_completed", job_id=job.id, lease_id=slot.lease_id)
        else:
            tail = mask("\n".join(slot.process.tail), slot.masked) if slot.process else ""
            retryable = code not in self.config.non_retryable_exit_codes
            reply = await self.client.fail(slot.lease_id, f"exit code {code}\n{tail}"[-8000:],
                                           retryable=retryable, next_claim=self._next_claim())
            log.info("job_failed", job_id=job.id, exit_code=code, will_retry=reply.will_retry)
            claims = reply.claims
        for claim in claims:  # this slot's next job, claimed by the same request
            if self.stopping.is_set():
                await self._give_back(_Slot(claim))
            else:
                self._start(claim)

    def _next_claim(self) -> dict[str, Any] | None:
        """One request per job: the report also claims this slot's next job (not waiting; the
        claim loop long-polls) unless the agent is stopping."""
        if self.stopping.is_set():
            return None
        return {"labels": self.config.labels, "queues": self.config.queues,
                "lease_ttl_secs": self.config.lease_ttl_secs, "max_jobs": 1}

    # -- background loops ----------------------------------------------------------------------

    async def _heartbeat_leases(self) -> None:
        interval = max(0.2, self.config.lease_ttl_secs / 3)
        while True:
            await asyncio.sleep(interval)
            live = [s for s in self.slots.values() if not s.lost and not s.cancelled]
            if not live:
                continue
            try:
                results = await self.client.heartbeat_many(
                    [{"lease_id": s.lease_id, "lease_ttl_secs": self.config.lease_ttl_secs}
                     for s in live])
            except LeaseholdError as exc:
                log.warning("heartbeat_failed", error=str(exc))
                continue
            for result in results.results:
                slot = self.slots.get(result.lease_id)
                if slot is None:
                    continue
                if not result.ok or result.cancelled:
                    slot.lost, slot.cancelled = not result.ok, bool(result.cancelled)
                    log.warning("job_stopping", job_id=slot.claim.job.id,
                                reason=result.error or "cancelled")
                    if slot.process is not None:
                        stopper = asyncio.create_task(slot.process.stop(self.config.grace_secs))
                        self._stoppers.add(stopper)
                        stopper.add_done_callback(self._stoppers.discard)

    async def _heartbeat_worker(self) -> None:
        while True:
            await asyncio.sleep(WORKER_HEARTBEAT_SECS)
            await self._check_drain()

    async def _check_drain(self) -> None:
        """A worker heartbeat; stops claiming when the server asks this worker to drain."""
        try:
            reply = await self.client.worker_heartbeat(running_jobs=len(self.slots))
        except LeaseholdError as exc:
            log.warning("worker_heartbeat_failed", error=str(exc))
            return
        if reply.drain and not self.stopping.is_set():
            log.info("agent_draining", reason="server asked")
            self.stopping.set()

    async def _ship_logs(self) -> None:
        while True:
            await asyncio.sleep(LOG_FLUSH_SECS)
            await self._flush_logs()

    async def _flush_logs(self, only: _Slot | None = None) -> None:
        for slot in [only] if only else list(self.slots.values()):
            # The periodic shipper and the job's final flush must not push the same slot at
            # once: each would drop the batch it sent from ``pending``, losing unsent lines,
            # and a later sequence landing first would make the server drop earlier ones.
            async with slot.push_lock:
                await self._flush_slot(slot)

    async def _flush_slot(self, slot: _Slot) -> None:
        while slot.pending and not slot.lost:
            batch = slot.pending[:LOG_BATCH]
            try:
                await self.client.push_logs(slot.lease_id, batch)
            except LeaseLost:
                slot.lost = slot.lost or not slot.cancelled
                slot.pending.clear()
                return
            except LeaseholdError as exc:
                log.warning("log_push_failed", error=str(exc))
                return  # kept; resent later with the same sequences
            del slot.pending[:len(batch)]


async def _first(*aws: Any) -> None:
    """Waits until the first of several awaitables finishes; cancels the others."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
