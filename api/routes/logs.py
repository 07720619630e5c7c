"""Log routes: fenced push (capped in bytes), paged read, live SSE tail; the job events stream;
stream tickets."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any, Literal

import orjson
from aiohttp import web
from aiohttp_sse import sse_response
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Tag,
)

from leasehold.api.routes.secrets import masked
from leasehold.api.server.appkeys import SERVICES
from leasehold.api.server.errors import error_response
from leasehold.api.server.http import principal, query_int, read_model, respond
from leasehold.api.server.routing import ENTRY_ID, READERS, WORKERS, integer, matching, router
from leasehold.api.server.sse import KEEP_ALIVE_SECS, KeepAliveResponse, track
from leasehold.scheduler import errors
from leasehold.scheduler.keys import QUEUE_NAME
from leasehold.scheduler.logs import (
    MAX_READ,
    LogChunk,
    LogTooLarge,
    NewChunk,
    SubscriberTooSlow,
    check_entry_id,
)
from leasehold.scheduler.models import Strict, typed_event


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


# stdout | stderr | system; seed 000's STDOUT / STDERR / SYSTEM too (any case), stored lowercase
StreamName = Annotated[Literal["stdout", "stderr", "system"], BeforeValidator(_lower)]


class ChunkIn(BaseModel):
    """One chunk as a worker sends it; a client's own job_id/workflow_id are ignored (the
    lease decides the job)."""

    model_config = ConfigDict(extra="forbid")
    data: Annotated[str, Field(max_length=1_000_000)]
    stream: StreamName = "stdout"
    sequence: int | None = Field(default=None, ge=0)
    timestamp_ms: int | None = Field(default=None, ge=0)
    job_id: str | None = None
    workflow_id: str | None = None


class ChunksPush(Strict):
    """workflow-graph's push: ``{"chunks": [...]}``."""

    chunks: list[ChunkIn] = Field(max_length=10_000)


class SingleChunkPush(Strict):
    """Tendril's push (seed 000): one chunk, ``{"log_chunk", "stream_type"}``."""

    log_chunk: str = Field(max_length=1_000_000)
    stream_type: StreamName = "stdout"


def _push_shape(body: Any) -> str | None:
    """Which push a body is, by its keys; None (one error) for neither or both."""
    if isinstance(body, dict) and ("chunks" in body) != ("log_chunk" in body):
        return "chunks" if "chunks" in body else "log_chunk"
    return None


class LogPush(RootModel[Annotated[
        Annotated[ChunksPush, Tag("chunks")] | Annotated[SingleChunkPush, Tag("log_chunk")],
        Discriminator(_push_shape, custom_error_type="log_push_shape",
                      custom_error_message="send chunks, or log_chunk with stream_type")]]):
    """Either push, each a strict object of its own (one schema each in the document)."""

    def new_chunks(self) -> list[NewChunk]:
        if isinstance(self.root, ChunksPush):
            return [NewChunk(c.data, c.stream, c.sequence, c.timestamp_ms)
                    for c in self.root.chunks]
        return [NewChunk(self.root.log_chunk, self.root.stream_type)]


class LogPushed(BaseModel):
    appended: int
    dropped: int
    last_id: str | None


# Every streaming (SSE) route; tests check it against the route table.
STREAM_PATHS = (r"^/api/events$|^/api/jobs/[^/]+/logs/stream$"
                r"|^/api/workflows/[^/]+/jobs/[^/]+/logs/stream$")


class TicketRequest(Strict):
    path: str = Field(description="the GET path the ticket opens, e.g. /api/jobs/<id>/logs/stream",
                      max_length=512, pattern=STREAM_PATHS)


class TicketIssued(BaseModel):
    ticket: str
    expires_at_ms: int


@router.route("POST", "/api/jobs/{lease_id}/logs", roles=WORKERS, tag="logs", body=LogPush,
              response=LogPushed, status=202,
              summary="Append log chunks (fenced by the lease; resent sequences are dropped)",
              errors=(400, 401, 403, 409, 413))
async def push_logs(request: web.Request) -> web.Response:
    body = await read_model(request, LogPush)
    chunks = await _masked(request, request.match_info["lease_id"], body.new_chunks())
    try:
        result = await request.app[SERVICES].logs.append(
            request.match_info["lease_id"], principal(request).lease_owner, chunks)
    except LogTooLarge as exc:
        return error_response(413, exc.code, exc.message, request, extra=exc.details)
    return respond(LogPushed(appended=result.appended, dropped=result.dropped,
                             last_id=result.last_id), 202)


async def _masked(request: web.Request, lease_id: str, chunks: list[NewChunk]) -> list[NewChunk]:
    for chunk, data in zip(chunks, await masked(request, lease_id, [c.data for c in chunks]),
                           strict=True):
        chunk.data = data
    return chunks


@router.route("GET", "/api/jobs/{id}/logs", roles=READERS, tag="logs", response=list[LogChunk],
              query={"after": matching("entry id to read after", ENTRY_ID),
                     "limit": integer("default 1000", 1, 1000)},
              summary="A job's log chunks in order, each with its stream entry id",
              errors=(400, 401, 403, 404))
async def read_logs(request: web.Request) -> web.Response:
    return await serve_log_read(request, request.match_info["id"])


async def serve_log_read(request: web.Request, job_id: str) -> web.Response:
    principal(request).require_job(job_id)
    limit = query_int(request, "limit", MAX_READ, 1, MAX_READ)
    chunks, _ = await request.app[SERVICES].logs.read(job_id, request.query.get("after"), limit)
    return respond(chunks if chunks else [])


@router.route("GET", "/api/jobs/{id}/logs/stream", roles=READERS, tag="logs", sse=True,
              query={"after": matching("entry id to resume after (or Last-Event-ID)",
                                      ENTRY_ID),
                     "ticket": "stream ticket, for browsers"},
              summary="SSE: history then live chunks (event: log), then event: end",
              errors=(400, 401, 403, 404))
async def stream_logs(request: web.Request) -> web.StreamResponse:
    return await serve_log_stream(request, request.match_info["id"])


async def serve_log_stream(request: web.Request, job_id: str) -> web.StreamResponse:
    principal(request).require_job(job_id)
    logs = request.app[SERVICES].logs
    after = request.headers.get("Last-Event-ID") or request.query.get("after")
    if after is not None:  # checked before the stream starts: an empty one is refused too
        check_entry_id(after)
    await request.app[SERVICES].scheduler.get(job_id)  # 404 before the stream starts
    track(request)
    async with sse_response(request, response_cls=KeepAliveResponse,
                            ping_interval=KEEP_ALIVE_SECS) as resp:
        try:
            async with contextlib.aclosing(
                    logs.tail(job_id, after, lambda: cut_off(request))) as items:
                async for item in items:
                    if isinstance(item, LogChunk):
                        # not resp.send: the same bytes go to every viewer, and a stalled
                        # viewer is cut off by cut_off() or the keep-alive's send timeout
                        await resp.write(log_event(job_id, item))
                    else:
                        await resp.send(orjson.dumps({"status": item}).decode(), event="end")
                        break
        except SubscriberTooSlow:
            pass  # the client reconnects with Last-Event-ID and reads the rest as history
        except (ConnectionResetError, asyncio.CancelledError):
            pass
    return resp


class EncodedEvents:
    """Each log chunk's SSE event, encoded once for all its viewers; the oldest are dropped
    past ``budget`` bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self.events: dict[tuple[str, str], bytes] = {}

    def __call__(self, job_id: str, chunk: LogChunk) -> bytes:
        memo = (job_id, chunk.id)
        event = self.events.get(memo)
        if event is None:
            data = chunk.model_dump_json()  # one line, so one data line
            event = f"id: {chunk.id}\r\nevent: log\r\ndata: {data}\r\n\r\n".encode()
            self.events[memo] = event
            self.size += len(event)
            while self.size > self.budget:
                self.size -= len(self.events.pop(next(iter(self.events))))
        return event


log_event = EncodedEvents(8 << 20)


def cut_off(request: web.Request) -> None:
    """Drops a viewer that fell too far behind (its bounded queue overflowed) at once, even while
    its handler waits on a stalled write: what it has not received stays in Redis, and it
    resumes with Last-Event-ID."""
    transport = request.transport
    if transport is not None:
        transport.abort()


@router.route("GET", "/api/events", roles=READERS, tag="logs", sse=True,
              query={"queue": matching("queue name (default: every queue)", QUEUE_NAME.pattern),
                     "workflow_id": "only this workflow's jobs", "ticket": "stream ticket"},
              summary="SSE of job state transitions (event: job), from the per-queue streams",
              errors=(400, 401, 403))
async def stream_events(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    queue = request.query.get("queue")
    if queue is not None and not QUEUE_NAME.match(queue):
        raise errors.InvalidArgument("queue must match " + QUEUE_NAME.pattern)
    workflow = request.query.get("workflow_id")
    caller = principal(request)
    if queue:
        caller.require(queue)
    queues = [queue] if queue else [q for q in await services.scheduler.queues() if caller.may(q)]
    names = {services.scheduler.queue_keys(name).events: name for name in queues}
    # one subscription over every queue's stream: the process's one reader serves them all
    sub = await services.hub.subscribe(names, lambda: cut_off(request))
    track(request)
    try:
        async with sse_response(request, response_cls=KeepAliveResponse,
                                ping_interval=KEEP_ALIVE_SECS) as resp:
            with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
                while not sub.overflowed.is_set() or not sub.queue.empty():
                    key, (entry_id, fields) = await sub.queue.get()
                    if workflow and fields.get("workflow") != workflow:
                        continue
                    event = {"queue": names[key], **typed_event(fields)}
                    await resp.send(orjson.dumps(event).decode(),
                                    id=entry_id, event="job")
        return resp
    finally:
        await services.hub.unsubscribe(sub)


@router.route("POST", "/api/stream-tickets", roles=(*READERS, "worker"), tag="logs",
              body=TicketRequest, response=TicketIssued, status=201,
              summary="A 60-second ticket that opens one SSE path (?ticket=) for EventSource",
              errors=(400, 401, 403))
async def create_ticket(request: web.Request) -> web.Response:
    body = await read_model(request, TicketRequest)
    spec_paths = {spec.path for spec in router.specs if spec.sse}
    if not any(_matches(template, body.path) for template in spec_paths):
        raise errors.InvalidArgument("path must be a streaming route, e.g. /api/events")
    ticket, expires = await request.app[SERVICES].tokens.create_stream_ticket(
        principal(request), body.path)
    return respond(TicketIssued(ticket=ticket, expires_at_ms=expires), 201)


def _matches(template: str, path: str) -> bool:
    parts, want = template.split("/"), path.split("/")
    return len(parts) == len(want) and all(
        p == w or (p.startswith("{") and w) for p, w in zip(parts, want, strict=True))


