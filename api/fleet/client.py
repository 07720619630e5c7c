"""``LeaseholdClient``: a typed asyncio client for the HTTP API, with retries and typed errors."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
import orjson
from pydantic import BaseModel, JsonValue

from leasehold.api.wire import (
    BulkSubmitted,
    FailReply,
    HeartbeatReply,
    JobPage,
    LeaseResults,
    Registered,
    SubmittedJob,
    WorkerHeartbeatReply,
)
from leasehold.scheduler.models import RAW_FIELDS, Claim, Job, JobSpec, QueueStats, Worker
from leasehold.scheduler.rawjson import RawJson, encode, loads_keeping

M = TypeVar("M", bound=BaseModel)


class FailedWithNext(FailReply):
    """A fail's reply; ``claims``: the jobs claimed in the same call (``next_claim``)."""

    claims: list[Claim] = []


class LeaseholdError(Exception):
    """A non-2xx reply: ``status``, the machine ``code`` and the server's ``message``."""

    def __init__(self, status: int, code: str, message: str, body: Mapping[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class BadRequest(LeaseholdError):
    pass


class Unauthorized(LeaseholdError):
    pass


class Forbidden(LeaseholdError):
    pass


class NotFound(LeaseholdError):
    pass


class Conflict(LeaseholdError):
    pass


class LeaseLost(Conflict):
    """The lease can no longer act: ``code`` is lease_expired, job_cancelled, ..."""


class Unavailable(LeaseholdError):
    """The server or its Redis is unavailable (503), or the server cannot be reached."""


LEASE_CODES = {"lease_expired", "lease_not_found", "lease_superseded", "job_cancelled",
               "job_finished"}
_BY_STATUS: dict[int, type[LeaseholdError]] = {400: BadRequest, 401: Unauthorized,
                                               403: Forbidden, 404: NotFound, 409: Conflict,
                                               413: BadRequest, 503: Unavailable}


def backoff_delay(attempt: int, base: float = 0.2, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^attempt)]."""
    return random.uniform(0, min(cap, base * 2**attempt))


class LeaseholdClient:
    """One keep-alive session; every method is one request (retried on 503 and network errors)."""

    def __init__(self, server: str, token: str | None = None, *, retries: int = 5,
                 timeout_secs: float = 60.0, session: aiohttp.ClientSession | None = None) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.retries = retries
        self._timeout = aiohttp.ClientTimeout(total=timeout_secs)
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def request(self, method: str, path: str, body: Any = None,
                      params: Mapping[str, str] | None = None, retry: bool = True,
                      keep: frozenset[str] = frozenset()) -> Any:
        """The decoded JSON reply; raises a ``LeaseholdError`` subclass for non-2xx replies.

        Members named in ``keep`` (a job's payload, metadata, outputs) stay ``RawJson``: the
        exact text the server sent, so no number or empty array is re-encoded on the way.
        """
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else encode(body).encode()
        attempt = 0
        while True:
            try:
                async with self._http().request(method, self.server + path, data=data,
                                                headers=headers, params=params) as resp:
                    raw = await resp.read()
                    if resp.status < 400:
                        if not raw:
                            return None
                        return loads_keeping(raw, keep) if keep else orjson.loads(raw)
                    error = _error(resp.status, raw)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                error = Unavailable(0, "unreachable", f"{self.server}: {exc}", {})
            if not (retry and isinstance(error, Unavailable) and attempt < self.retries):
                raise error
            await asyncio.sleep(backoff_delay(attempt))
            attempt += 1

    async def _model(self, model: type[M], method: str, path: str, body: Any = None,
                     params: Mapping[str, str] | None = None,
                     keep: frozenset[str] = frozenset()) -> M:
        return model.model_validate(await self.request(method, path, body, params, keep=keep))

    # -- producers -----------------------------------------------------------------------------

    async def submit(self, spec: JobSpec | Mapping[str, Any]) -> SubmittedJob:
        return await self._model(SubmittedJob, "POST", "/api/jobs", _dump(spec), keep=RAW_FIELDS)

    async def submit_bulk(self, specs: list[JobSpec]) -> BulkSubmitted:
        return await self._model(BulkSubmitted, "POST", "/api/jobs/bulk",
                                 {"jobs": [_dump(s) for s in specs]}, keep=RAW_FIELDS)

    async def get_job(self, job_id: str) -> Job:
        return await self._model(Job, "GET", f"/api/jobs/{job_id}", keep=RAW_FIELDS)

    async def list_jobs(self, queue: str = "default", status: str | None = None,
                        limit: int = 100, cursor: str | None = None) -> JobPage:
        params = {"queue": queue, "limit": str(limit)}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        return await self._model(JobPage, "GET", "/api/jobs", params=params, keep=RAW_FIELDS)

    async def cancel(self, job_id: str) -> None:
        await self.request("POST", f"/api/jobs/{job_id}/cancel")

    async def retry_job(self, job_id: str) -> None:
        await self.request("POST", f"/api/jobs/{job_id}/retry")

    # -- workers -------------------------------------------------------------------------------

    async def register(self, labels: list[str], worker_id: str | None = None,
                       name: str | None = None, version: str | None = None) -> Registered:
        body: dict[str, Any] = {"labels": labels, "worker_id": worker_id, "name": name,
                                "version": version}
        return await self._model(Registered, "POST", "/api/workers/register",
                                 {k: v for k, v in body.items() if v is not None})

    async def worker_heartbeat(self, running_jobs: int | None = None,
                               version: str | None = None) -> WorkerHeartbeatReply:
        body = {k: v for k, v in {"running_jobs": running_jobs, "version": version}.items()
                if v is not None}
        return await self._model(WorkerHeartbeatReply, "POST", "/api/workers/heartbeat", body)

    async def claim(self, labels: list[str], max_jobs: int = 1, wait_secs: float = 0,
                    queues: list[str] | None = None, lease_ttl_secs: float | None = None,
                    worker_id: str | None = None) -> list[Claim]:
        """Leased jobs (possibly none). Not retried: a lost reply's lease simply expires."""
        body: dict[str, Any] = {"labels": labels, "max_jobs": max_jobs, "wait_secs": wait_secs,
                                "queues": queues or ["default"]}
        if lease_ttl_secs is not None:
            body["lease_ttl_secs"] = lease_ttl_secs
        if worker_id is not None:
            body["worker_id"] = worker_id
        reply = await self.request("POST", "/api/jobs/claim", body, retry=False, keep=RAW_FIELDS)
        return [Claim.model_validate(item) for item in reply["claims"]]

    async def heartbeat(self, lease_id: str, lease_ttl_secs: float | None = None,
                        progress: int | None = None) -> HeartbeatReply:
        body = {k: v for k, v in {"lease_ttl_secs": lease_ttl_secs, "progress": progress}.items()
                if v is not None}
        return await self._model(HeartbeatReply, "POST", f"/api/jobs/{lease_id}/heartbeat", body)

    async def heartbeat_many(self, items: list[dict[str, Any]]) -> LeaseResults:
        return await self._model(LeaseResults, "POST", "/api/leases/heartbeat", {"leases": items})

    async def complete(self, lease_id: str,
                       outputs: Mapping[str, JsonValue] | RawJson | None = None,
                       next_claim: Mapping[str, Any] | None = None) -> list[Claim]:
        """``outputs`` as a mapping, or as a ``RawJson`` object sent exactly as it is.
        ``next_claim`` (``{labels?, queues?, lease_ttl_secs?, wait_secs?, max_jobs?}``): also
        claim in the same request (one request per job); returns those claims."""
        body: dict[str, Any] = {
            "outputs": outputs if isinstance(outputs, RawJson) else dict(outputs or {})}
        try:
            reply = await self.request("POST", f"/api/jobs/{lease_id}/complete",
                                       _with_next(body, next_claim), keep=RAW_FIELDS)
        except LeaseLost as exc:
            if exc.code != "job_finished":
                raise  # job_finished after a retry: our first attempt got through
            return []
        return _next_claims(reply)

    async def fail(self, lease_id: str, error: str, retryable: bool = False,
                   next_claim: Mapping[str, Any] | None = None) -> FailedWithNext:
        """With ``next_claim``, the reply's ``claims`` are the jobs claimed in the same call."""
        body = _with_next({"error": error, "retryable": retryable}, next_claim)
        reply = await self.request("POST", f"/api/jobs/{lease_id}/fail", body, keep=RAW_FIELDS)
        return FailedWithNext(will_retry=reply["will_retry"],
                              retry_at_ms=reply.get("retry_at_ms"), claims=_next_claims(reply))

    async def release(self, lease_id: str,
                      next_claim: Mapping[str, Any] | None = None) -> list[Claim]:
        reply = await self.request("POST", f"/api/jobs/{lease_id}/release",
                                   _with_next({}, next_claim) if next_claim is not None else None,
                                   keep=RAW_FIELDS)
        return _next_claims(reply)

    async def push_logs(self, lease_id: str, chunks: list[dict[str, Any]]) -> None:
        """Chunks carry ``sequence`` numbers, so a retried batch is stored once."""
        await self.request("POST", f"/api/jobs/{lease_id}/logs", {"chunks": chunks})

    async def get_worker(self, worker_id: str) -> Worker:
        return await self._model(Worker, "GET", f"/api/workers/{worker_id}")

    async def queues(self) -> list[QueueStats]:
        return [QueueStats.model_validate(q) for q in await self.request("GET", "/api/queues")]


def _with_next(body: dict[str, Any], next_claim: Mapping[str, Any] | None) -> dict[str, Any]:
    if next_claim is not None:
        body["next"] = {"max_jobs": 1, **next_claim}  # always answered as {"claims": [...]}
    return body


def _next_claims(reply: Any) -> list[Claim]:
    found = reply.get("next") if isinstance(reply, dict) else None
    if not isinstance(found, dict):
        return []
    return [Claim.model_validate(item) for item in found.get("claims", [])]


def _dump(spec: JobSpec | Mapping[str, Any]) -> Any:
    if isinstance(spec, JobSpec):
        return spec.model_dump(exclude_defaults=True)  # payload and metadata stay RawJson
    return dict(spec)


def _error(status: int, raw: bytes) -> LeaseholdError:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("error", "http_error"))
    message = str(body.get("message", raw[:200].decode(errors="replace")))
    cls = LeaseLost if status == 409 and code in LEASE_CODES else _BY_STATUS.get(
        status, LeaseholdError)
    return cls(status, code, message, body)
