"""What the operator console asks besides the resources: who the token is, a queue's last hour."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from leasehold.api.server.appkeys import SERVICES, SETTINGS
from leasehold.api.server.http import principal, query_int, respond
from leasehold.api.server.routing import READERS, integer, router
from leasehold.scheduler import errors
from leasehold.scheduler.keys import QUEUE_NAME

_PAGE = 1000
_MAX_ID_SEQ = 18446744073709551615  # the largest sequence part of a stream entry id


class Me(BaseModel):
    role: str
    auth: bool = Field(description="false: the server runs with auth off")
    token_id: str | None = None
    name: str | None = None
    queues: list[str] | None = Field(default=None, description="the only queues it may act in")


class Activity(BaseModel):
    queue: str
    since_ms: int
    minute_ms: list[int] = Field(description="start of each minute bucket, oldest first")
    success: list[int]
    failure: list[int]
    complete: bool = Field(description="false: the capped event stream no longer reaches back "
                           "to since_ms, so the oldest buckets undercount")


@router.route("GET", "/api/me", roles=(*READERS, "worker", "metrics"), tag="operations",
              response=Me, summary="The calling token's role (and queue limit)", errors=(401,))
async def whoami(request: web.Request) -> web.Response:
    caller = principal(request)
    return respond(Me(role=caller.role, auth=request.app[SETTINGS].auth,
                      token_id=caller.id or None, name=caller.name or None,
                      queues=sorted(caller.queues) if caller.queues is not None else None))


@router.route("GET", "/api/queues/{queue}/activity", roles=READERS, tag="queues",
              response=Activity, query={"minutes": integer("1..60 (default 60)", 1, 60)},
              summary="Jobs finished per minute (success, failure) over the last minutes, "
              "counted from the queue's capped event stream", errors=(400, 401, 403))
async def queue_activity(request: web.Request) -> web.Response:
    queue = request.match_info["queue"]
    if not QUEUE_NAME.match(queue):
        raise errors.InvalidArgument("queue must match " + QUEUE_NAME.pattern)
    principal(request).require(queue)
    minutes = query_int(request, "minutes", 60, 1, 60)
    scheduler = request.app[SERVICES].scheduler
    now = await scheduler.now_ms()
    first = (now // 60_000 - minutes + 1) * 60_000
    success, failure = [0] * minutes, [0] * minutes
    after = f"{first - 1}-{_MAX_ID_SEQ}"
    oldest = await scheduler.events(queue, "-", 1)
    read = 0
    while True:  # bounded: the stream is capped at LEASEHOLD_EVENTS_MAXLEN entries
        entries = await scheduler.events(queue, after, _PAGE)
        read += len(entries)
        for entry in entries:
            slot = (int(entry["id"].split("-")[0]) - first) // 60_000
            if 0 <= slot < minutes:
                if entry.get("to") == "success":
                    success[slot] += 1
                elif entry.get("to") == "failure":
                    failure[slot] += 1
        if len(entries) < _PAGE:
            break
        after = entries[-1]["id"]
    # a trimmed stream holds at least its cap; one that starts inside the window was trimmed
    cap = request.app[SETTINGS].events_maxlen
    complete = not oldest or oldest[0].get("t", 0) <= first or read < cap
    return respond(Activity(queue=queue, since_ms=first,
                            minute_ms=[first + i * 60_000 for i in range(minutes)],
                            success=success, failure=failure, complete=complete))
