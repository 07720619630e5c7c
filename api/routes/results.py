"""Result modes of a submit: async (201 at once), sync (the finished job), stream (SSE of logs
and progress, then the job) and webhook (the finished job POSTed, signed, by ``leasehold
webhooks``)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Annotated, Any, Literal

import orjson
from aiohttp import web
from aiohttp_sse import sse_response
from pydantic import ConfigDict, Field, field_validator

from leasehold.api.routes.logs import cut_off, log_event
from leasehold.api.server.appkeys import SERVICES, SETTINGS
from leasehold.api.server.http import respond
from leasehold.api.server.sse import KEEP_ALIVE_SECS, KeepAliveResponse, track
from leasehold.scheduler.errors import InvalidArgument, SchedulerError
from leasehold.scheduler.logs import LogChunk, SubscriberTooSlow
from leasehold.scheduler.models import Job, RunnableJobSpec, Strict
from leasehold.scheduler.webhooks import (
    SIGNATURE_HEADER,
    check_url,
    webhook_fields,
    webhook_mode_rule,
)

SYNC_POLL_SECS = 0.05
PROGRESS_POLL_SECS = 0.5
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
_RESERVED = frozenset({"host", "content-length", "content-type", "transfer-encoding",
                       "connection", SIGNATURE_HEADER.lower()})


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


# The document's form of _safe_headers below (JSON Schema patterns have no case-insensitive flag).
_HEADERS_SCHEMA: dict[str, Any] = {
    "propertyNames": {"pattern": _HEADER_NAME.pattern, "not": {
        "pattern": "^(" + "|".join(_any_case(name) for name in sorted(_RESERVED)) + ")$"}},
    "additionalProperties": {"type": "string", "maxLength": 1024, "pattern": "^[^\r\n]*$"}}


class WebhookSpec(Strict):
    url: Annotated[str, Field(max_length=2048, description="http(s) URL the finished job is "
                              "POSTed to; its host must resolve to a public address (unless "
                              "LEASEHOLD_WEBHOOK_ALLOW_PRIVATE)")]
    headers: dict[str, Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict, max_length=20, json_schema_extra=_HEADERS_SCHEMA,
        description="extra request headers (not Host, Content-Length, Content-Type, "
        "Transfer-Encoding, Connection or the signature header)")

    @field_validator("headers")
    @classmethod
    def _safe_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.match(name) or name.lower() in _RESERVED:
                raise ValueError(f"header {name!r} is not allowed")
            if "\r" in text or "\n" in text:
                raise ValueError(f"header {name!r} has a line break")
        return value


class ResultSpec(Strict):
    """How the submit's reply brings the result back."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=webhook_mode_rule(
        ["async", "sync", "stream"]))

    mode: Literal["async", "sync", "stream", "webhook"] = "async"
    timeout_secs: float = Field(default=30.0, gt=0, le=3600,
                                description="sync: how long to wait before answering 202")
    webhook: WebhookSpec | None = None


class SubmitBody(RunnableJobSpec):
    """A job, and optionally how its result comes back."""

    result: ResultSpec | None = None


async def webhook_job_fields(request: web.Request, result: ResultSpec | None) -> dict[str, str]:
    """The record fields of a webhook job; checks its URL now (400 ``webhook_refused``)."""
    if result is None or result.mode != "webhook":
        if result is not None and result.webhook is not None:
            raise InvalidArgument("result.webhook is only for mode webhook")
        return {}
    if result.webhook is None:
        raise InvalidArgument("mode webhook needs result.webhook.url")
    target = await check_url(result.webhook.url, request.app[SETTINGS].webhook_allow_private)
    return webhook_fields(target.url, result.webhook.headers)


async def wait_terminal(request: web.Request, job: Job, wait_secs: float) -> Job:
    """The job as it is when it ends, or when ``wait_secs`` run out."""
    scheduler = request.app[SERVICES].scheduler
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait_secs, request.app[SETTINGS].max_hold_secs or wait_secs)
    delay = SYNC_POLL_SECS
    while not job.status.terminal and loop.time() < deadline:
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, 1.0)
        job = await scheduler.get(job.id)
    return job


async def stream_result(request: web.Request, job: Job) -> web.StreamResponse:
    """SSE: ``log`` events (history then live), ``progress`` events when the job's status or
    progress changes, then one ``end`` event whose data is the finished job."""
    services = request.app[SERVICES]
    track(request)
    async with sse_response(request, response_cls=KeepAliveResponse, allow_all_methods=True,
                            ping_interval=KEEP_ALIVE_SECS) as resp:
        lock = asyncio.Lock()
        watcher = asyncio.create_task(_progress(request, resp, lock, job))
        try:
            async with contextlib.aclosing(
                    services.logs.tail(job.id, None, lambda: cut_off(request))) as items:
                async for item in items:
                    if not isinstance(item, LogChunk):
                        break
                    async with lock:
                        await resp.write(log_event(job.id, item))
            final = await services.scheduler.get(job.id)
            watcher.cancel()
            async with lock:
                await resp.send(respond(final).text or "", event="end")
        except (SubscriberTooSlow, ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            watcher.cancel()
    return resp


async def _progress(request: web.Request, resp: KeepAliveResponse, lock: asyncio.Lock,
                    job: Job) -> None:
    """Sends ``progress`` events until the job ends (or the viewer leaves, or it is purged)."""
    with contextlib.suppress(ConnectionResetError, SchedulerError):
        await _watch_progress(request, resp, lock, job)


async def _watch_progress(request: web.Request, resp: KeepAliveResponse, lock: asyncio.Lock,
                          job: Job) -> None:
    scheduler = request.app[SERVICES].scheduler
    seen: tuple[object, ...] = ()
    while True:
        state = (job.status.value, job.progress, job.progress_message)
        if state != seen:
            seen = state
            data = {"status": state[0], "progress": state[1], "progress_message": state[2]}
            async with lock:
                await resp.send(orjson.dumps(data).decode(), event="progress")
        if job.status.terminal:
            return
        await asyncio.sleep(PROGRESS_POLL_SECS)
        job = await scheduler.get(job.id)
