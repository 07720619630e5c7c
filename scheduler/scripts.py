"""The only reader of ``lua/``: loads each script once and exposes one typed method per script."""

from __future__ import annotations

import asyncio
import random
import re
from importlib import resources
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from leasehold.scheduler import errors
from leasehold.scheduler.keys import Keyspace, QueueKeys

_INCLUDE = re.compile(r"^-- @include (\w+)$", re.MULTILINE)

# The one table from a script's status string to the error it means.
STATUS_ERRORS: dict[str, type[errors.SchedulerError]] = {
    "LEASE_NOT_FOUND": errors.LeaseNotFound,
    "LEASE_SUPERSEDED": errors.LeaseSuperseded,
    "LEASE_EXPIRED": errors.LeaseExpired,
    "LEASE_RELEASED": errors.LeaseNotFound,
    "JOB_CANCELLED": errors.JobCancelled,
    "JOB_FINISHED": errors.JobFinished,
    "NOT_OWNER": errors.NotLeaseOwner,
    "NOT_FOUND": errors.JobNotFound,
    "INVALID_STATE": errors.InvalidState,
    "ID_EXISTS": errors.JobAlreadyExists,
    "REGTOKEN_INVALID": errors.Unauthorized,
    "WORKER_CONFLICT": errors.Conflict,
    "NAME_CONFLICT": errors.Conflict,
    "RUN_ACTIVE": errors.Conflict,
    "WORKFLOW_JOB": errors.InvalidState,
    "RATE_LIMITED": errors.RateLimited,
}
_MESSAGES = {
    "LEASE_NOT_FOUND": "no such lease",
    "LEASE_SUPERSEDED": "the job was leased again under a newer lease",
    "LEASE_EXPIRED": "the lease expired",
    "LEASE_RELEASED": "the lease was released",
    "JOB_CANCELLED": "the job was cancelled",
    "JOB_FINISHED": "the lease already reported the job's outcome",
    "NOT_OWNER": "the lease belongs to another worker",
    "NOT_FOUND": "no such job",
    "INVALID_STATE": "the job's status does not allow this",
    "ID_EXISTS": "a job with this id exists",
    "REGTOKEN_INVALID": "the registration token is unknown, expired or used up",
    "WORKER_CONFLICT": "the worker id belongs to another live worker",
    "NAME_CONFLICT": "the worker name belongs to another live worker",
    "RUN_ACTIVE": "the workflow has an active run",
    "WORKFLOW_JOB": "a workflow job is retried by running its workflow again",
    "RATE_LIMITED": "the queue is over its submit_rate; retry later",
}

Reply = list[Any]


def lua_dir() -> Path:
    """The Lua scripts: ``lua/`` of the repository, installed as ``leasehold/lua``."""
    return Path(str(resources.files("leasehold") / "lua"))


def script_names() -> set[str]:
    return {path.stem for path in lua_dir().glob("*.lua")}


def source(name: str) -> str:
    """A script's text with each ``-- @include lib`` line replaced by ``lua/lib/<lib>.lua``."""
    root = lua_dir()

    def include(match: re.Match[str]) -> str:
        return (root / "lib" / f"{match.group(1)}.lua").read_text()

    return _INCLUDE.sub(include, (root / f"{name}.lua").read_text())


def raise_for(reply: Reply, **details: object) -> None:
    """Raises the error a non-OK status means; returns for the statuses a caller handles."""
    status = reply[0]
    error = STATUS_ERRORS.get(status)
    if error is not None:
        extra = {"status": reply[1]} if len(reply) > 1 else {}
        raise error(_MESSAGES[status], **details, **extra)


class Scripts:
    """One method per ``lua/*.lua``; EVALSHA with a reload on NOSCRIPT (redis-py's AsyncScript)."""

    def __init__(self, redis: Redis, events_maxlen: int = 10_000) -> None:
        self.redis = redis
        self.events_maxlen = str(events_maxlen)
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(source(name)) for name in sorted(script_names())
        }

    def all(self) -> list[AsyncScript]:
        return list(self._scripts.values())

    async def load(self) -> None:
        """Loads every script now, so a broken script fails start-up rather than a request."""
        for script in self._scripts.values():
            script.sha = await self.redis.script_load(script.script)

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> Reply:
        try:
            reply: Reply = await self._scripts[name](keys=keys, args=args)
        except ResponseError as exc:
            if "BAD_ARG" in str(exc):
                raise errors.ScriptContractError(f"{name}: {exc}") from exc
            raise
        return reply

    async def enqueue(
        self, q: QueueKeys, jobs: list[list[str]], now_ms: int | None, workflow_id: str = "",
        run_id: str = "", run_jobs_json: str = "", schedule: str = "",
    ) -> Reply:
        """Each job: [id, lsid, labels, priority, run_at_ms, delay_ms, unique_key, placement,
        *field_value_pairs]. ``schedule``: "<schedule id> <occurrence ms>" or ""."""
        args: list[Any] = [_now(now_ms), self.events_maxlen, len(jobs), workflow_id, run_id,
                           run_jobs_json, schedule]
        for job in jobs:
            head, pairs = job[:8], job[8:]
            args += [*head, len(pairs) // 2, *pairs]
        keys = [q.meta, q.labelsets, q.delayed, q.index, q.stats, q.events]
        return await self._call("enqueue", keys, args)

    async def claim(
        self,
        q: QueueKeys,
        worker_id: str,
        labels_json: str,
        lease_ttl_ms: int | None,
        tokens: list[str],
        promote_batch: int,
        now_ms: int | None,
        default_ttl_ms: int = 30_000,
    ) -> Reply:
        keys = [q.meta, q.labelsets, q.delayed, q.leases, q.stats, q.events, q.rate]
        args = [_now(now_ms), self.events_maxlen, worker_id, labels_json, _opt(lease_ttl_ms),
                promote_batch, default_ttl_ms, *tokens]
        return await self._call("claim", keys, args)

    def heartbeat_call(
        self, q: QueueKeys, job_id: str, lease_id: str, worker_id: str,
        lease_ttl_ms: int | None, progress: int | None, message: str | None, now_ms: int | None,
    ) -> tuple[list[str], list[Any]]:
        """The keys and args of ``heartbeat`` (for ``many``)."""
        args = [_now(now_ms), job_id, lease_id, worker_id, _opt(lease_ttl_ms), _opt(progress),
                "0" if message is None else "1", message or ""]
        return [q.meta, q.leases], args

    def fail_call(
        self, q: QueueKeys, job_id: str, lease_id: str, worker_id: str, error: str,
        retryable: bool, now_ms: int | None,
    ) -> tuple[list[str], list[Any]]:
        """The keys and args of ``fail`` (for ``many``)."""
        keys = [q.meta, q.leases, q.delayed, q.labelsets, q.done, q.stats, q.events]
        args = [_now(now_ms), self.events_maxlen, job_id, lease_id, worker_id, error,
                "1" if retryable else "0", repr(random.random())]
        return keys, args

    async def heartbeat(
        self,
        q: QueueKeys,
        job_id: str,
        lease_id: str,
        worker_id: str,
        lease_ttl_ms: int | None,
        progress: int | None,
        message: str | None,
        now_ms: int | None,
    ) -> Reply:
        args = [_now(now_ms), job_id, lease_id, worker_id, _opt(lease_ttl_ms), _opt(progress),
                "0" if message is None else "1", message or ""]
        return await self._call("heartbeat", [q.meta, q.leases], args)

    async def many(self, name: str, calls: list[tuple[list[str], list[Any]]],
                   pipeline: bool = True) -> list[Reply]:
        """Many calls of one script, each still one atomic script on its own. ``pipeline``: all
        in one round trip (a pipeline of EVALSHAs, not a transaction; a call that meets NOSCRIPT
        is sent again alone, which loads the script); else one call each, at once (a Cluster
        pipeline cannot carry scripts)."""
        script = self._scripts[name]

        async def alone(keys: list[str], args: list[Any]) -> Reply:
            reply: Reply = await script(keys=keys, args=args)  # EVALSHA, loads on NOSCRIPT
            return reply

        if not calls:
            return []
        if not pipeline:
            replies: list[Any] = await asyncio.gather(*(alone(*call) for call in calls),
                                                      return_exceptions=True)
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    await script(keys=keys, args=args, client=pipe)  # queued, not sent
                # Not redis-py's SCRIPT EXISTS round trip before every batch: load() loaded the
                # script at start, and a NOSCRIPT reply (restart, flush) is retried alone below.
                pipe.scripts.clear()
                replies = await pipe.execute(raise_on_error=False)
        out: list[Reply] = []
        for (keys, args), reply in zip(calls, replies, strict=True):
            if isinstance(reply, NoScriptError):
                reply = await alone(keys, args)
            if isinstance(reply, ResponseError) and "BAD_ARG" in str(reply):
                raise errors.ScriptContractError(f"{name}: {reply}") from reply
            if isinstance(reply, BaseException):
                raise reply
            out.append(reply)
        return out

    def complete_call(
        self, q: QueueKeys, job_id: str, lease_id: str, worker_id: str, outputs_json: str,
        now_ms: int | None, verification: str = "",
    ) -> tuple[list[str], list[Any]]:
        """The keys and args of ``complete`` (for ``many``)."""
        keys = [q.meta, q.leases, q.done, q.stats, q.events]
        args = [_now(now_ms), self.events_maxlen, job_id, lease_id, worker_id, outputs_json,
                verification]
        return keys, args

    async def complete(
        self, q: QueueKeys, job_id: str, lease_id: str, worker_id: str, outputs_json: str,
        now_ms: int | None, verification: str = "",
    ) -> Reply:
        keys = [q.meta, q.leases, q.done, q.stats, q.events]
        args = [_now(now_ms), self.events_maxlen, job_id, lease_id, worker_id, outputs_json,
                verification]
        return await self._call("complete", keys, args)

    async def complete_claim(
        self, q: QueueKeys, job_id: str, lease_id: str, worker_id: str, outputs_json: str,
        now_ms: int | None, verification: str, claimer: str, labels_json: str,
        lease_ttl_ms: int | None, tokens: list[str], promote_batch: int, default_ttl_ms: int,
    ) -> Reply:
        """``complete`` then ``claim`` in the same queue for ``claimer``, in one round trip."""
        keys = [q.meta, q.leases, q.done, q.stats, q.events, q.labelsets, q.delayed, q.rate]
        args = [_now(now_ms), self.events_maxlen, job_id, lease_id, worker_id, outputs_json,
                verification, claimer, labels_json, _opt(lease_ttl_ms), promote_batch,
                default_ttl_ms, *tokens]
        return await self._call("complete_claim", keys, args)

    async def fail(
        self, q: QueueKeys, job_id: str, lease_id: str, worker_id: str, error: str,
        retryable: bool, now_ms: int | None,
    ) -> Reply:
        keys = [q.meta, q.leases, q.delayed, q.labelsets, q.done, q.stats, q.events]
        args = [_now(now_ms), self.events_maxlen, job_id, lease_id, worker_id, error,
                "1" if retryable else "0", repr(random.random())]
        return await self._call("fail", keys, args)

    async def release(
        self, q: QueueKeys, job_id: str, lease_id: str, worker_id: str, now_ms: int | None
    ) -> Reply:
        keys = [q.meta, q.leases, q.labelsets, q.events]
        args = [_now(now_ms), self.events_maxlen, job_id, lease_id, worker_id]
        return await self._call("release", keys, args)

    async def cancel(self, q: QueueKeys, job_id: str, now_ms: int | None) -> Reply:
        keys = [q.meta, q.leases, q.delayed, q.done, q.stats, q.events]
        return await self._call("cancel", keys, [_now(now_ms), self.events_maxlen, job_id])

    async def cancel_run(self, q: QueueKeys, workflow_id: str, now_ms: int | None) -> Reply:
        keys = [q.meta, q.leases, q.delayed, q.done, q.stats, q.events]
        return await self._call("cancel_run", keys, [_now(now_ms), self.events_maxlen,
                                                     workflow_id])

    async def retry(self, q: QueueKeys, job_id: str, now_ms: int | None) -> Reply:
        keys = [q.meta, q.labelsets, q.done, q.stats, q.events]
        return await self._call("retry", keys, [_now(now_ms), self.events_maxlen, job_id])

    async def reap(self, q: QueueKeys, batch: int, now_ms: int | None) -> Reply:
        keys = [q.meta, q.leases, q.delayed, q.labelsets, q.done, q.index, q.stats, q.events]
        args = [_now(now_ms), self.events_maxlen, batch, random.randrange(1, 2**31)]
        return await self._call("reap", keys, args)

    async def forget_queue(self, q: QueueKeys, idle_ms: int, now_ms: int | None) -> Reply:
        keys = [q.meta, q.labelsets, q.delayed, q.leases, q.done, q.index, q.stats, q.events,
                q.rate]
        return await self._call("forget_queue", keys, [_now(now_ms), idle_ms])

    async def unindex_queue(self, ks: Keyspace, queue: str, cutoff_ms: int) -> Reply:
        return await self._call("unindex_queue", [ks.queues], [queue, cutoff_ms])

    async def append_logs(
        self, q: QueueKeys, job_id: str, lease_id: str, worker_id: str, log_maxlen: int,
        count: int, flat_chunks: list[str | int], now_ms: int | None, log_max_bytes: int,
    ) -> Reply:
        """``flat_chunks``: per chunk sequence ("" = none), stream, data, timestamp_ms ("")."""
        args = [_now(now_ms), job_id, lease_id, worker_id, log_maxlen, count, log_max_bytes,
                *flat_chunks]
        return await self._call("append_logs", [q.meta], args)

    async def promote(self, q: QueueKeys, batch: int, now_ms: int | None) -> Reply:
        return await self._call("promote", [q.meta, q.delayed, q.labelsets], [_now(now_ms), batch])

    # -- artifacts and webhook deliveries --------------------------------------------------------

    async def artifact_commit(
        self, q: QueueKeys, job_id: str, name: str, upload: str, size: int, content_type: str,
        sha256: str, worker_id: str, quota_bytes: int, max_count: int, chunks: int,
        now_ms: int | None = None,
    ) -> Reply:
        args = [_now(now_ms), job_id, name, upload, size, content_type, sha256, worker_id,
                quota_bytes, max_count, chunks]
        return await self._call("artifact_commit", [q.meta], args)

    async def webhook_claim(self, q: QueueKeys, batch: int, visibility_ms: int,
                            now_ms: int | None = None) -> Reply:
        return await self._call("webhook_claim", [q.meta, q.webhooks],
                                [_now(now_ms), batch, visibility_ms])

    async def webhook_record(
        self, q: QueueKeys, job_id: str, attempt: int, status_code: int | None, error: str,
        retry_ms: int | None, now_ms: int | None = None,
    ) -> Reply:
        args = [_now(now_ms), job_id, attempt, _opt(status_code), error, _opt(retry_ms)]
        return await self._call("webhook_record", [q.meta, q.webhooks], args)

    # -- workers and tokens (keys under the namespace's own hash tag) ---------------------------

    async def register(
        self, ks: Keyspace, regtoken_digest: str | None, worker_id: str, name: str,
        labels_json: str, version: str, metadata_json: str, offline_ms: int, token_digest: str,
        now_ms: int | None = None, replace_live: bool = False,
    ) -> Reply:
        keys = [ks.worker(worker_id), ks.workers, ks.worker_names, ks.token(token_digest),
                ks.regtoken(regtoken_digest or "none")]
        args = [_now(now_ms), "1" if regtoken_digest else "0", worker_id, name, labels_json,
                version, metadata_json, offline_ms, token_digest, "1" if replace_live else "0"]
        return await self._call("register", keys, args)

    async def authenticate(self, ks: Keyspace, token_digest: str) -> Reply:
        return await self._call("authenticate", [ks.token(token_digest)], [ks.worker_prefix])

    async def worker_heartbeat(
        self, ks: Keyspace, worker_id: str, version: str | None, running_jobs: int | None,
        resource_usage_json: str | None, now_ms: int | None = None,
    ) -> Reply:
        args = [_now(now_ms), version or "", _opt(running_jobs), resource_usage_json or ""]
        return await self._call("worker_heartbeat", [ks.worker(worker_id)], args)

    async def workers_seen(self, ks: Keyspace, worker_ids: list[str],
                           now_ms: int | None = None) -> Reply:
        """Signs of life of many workers in one call (their records share one hash tag)."""
        return await self._call("workers_seen", [ks.workers],
                                [_now(now_ms), ks.worker_prefix, *worker_ids])

    async def update_worker(
        self, ks: Keyspace, worker_id: str, labels_json: str, name: str, metadata_json: str,
        offline_ms: int, now_ms: int | None = None,
    ) -> Reply:
        """Empty ``labels_json``, ``name`` or ``metadata_json`` keep that field."""
        args = [_now(now_ms), labels_json, name, metadata_json, offline_ms]
        return await self._call("update_worker", [ks.worker(worker_id), ks.worker_names], args)

    async def sweep_workers(
        self, ks: Keyspace, offline_ms: int, retention_ms: int, offset: int, batch: int,
        now_ms: int | None = None,
    ) -> Reply:
        args = [_now(now_ms), offline_ms, retention_ms, offset, batch, ks.worker_prefix,
                ks.token_prefix]
        return await self._call("sweep_workers", [ks.workers, ks.worker_names], args)


def _now(now_ms: int | None) -> str:
    return "" if now_ms is None else str(now_ms)


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)
