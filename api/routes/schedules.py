"""Schedule routes: create, list, read and delete the jobs the reaper submits on a timetable."""

from __future__ import annotations

from aiohttp import web

from leasehold.api.server.appkeys import SERVICES
from leasehold.api.server.http import principal, read_model, respond
from leasehold.api.server.routing import PRODUCERS, router
from leasehold.api.wire import Deleted
from leasehold.scheduler.schedules import Schedule, Schedules, ScheduleSpec


def _schedules(request: web.Request) -> Schedules:
    return Schedules(request.app[SERVICES].scheduler)


@router.route("POST", "/api/schedules", roles=PRODUCERS, tag="schedules", body=ScheduleSpec,
              response=Schedule, status=201,
              summary="Create a schedule: the reaper submits `job` at each occurrence of `cron` "
              "(in `timezone`) or every `every_secs`, exactly once each (409 if the id exists)",
              errors=(400, 401, 403, 409))
async def create_schedule(request: web.Request) -> web.Response:
    spec = await read_model(request, ScheduleSpec)
    principal(request).require(spec.job.queue)
    return respond(await _schedules(request).create(spec), 201)


@router.route("GET", "/api/schedules", roles=PRODUCERS, tag="schedules", response=list[Schedule],
              summary="Every schedule (a token limited to some queues sees theirs)",
              errors=(401, 403))
async def list_schedules(request: web.Request) -> web.Response:
    caller = principal(request)
    found = [s for s in await _schedules(request).list() if caller.may(s.job.queue)]
    return respond(found if found else [])


async def _one(request: web.Request) -> Schedule:
    schedule = await _schedules(request).get(request.match_info["id"])
    principal(request).require(schedule.job.queue)
    return schedule


@router.route("GET", "/api/schedules/{id}", roles=PRODUCERS, tag="schedules", response=Schedule,
              summary="One schedule with its last enqueued occurrence", errors=(401, 403, 404))
async def get_schedule(request: web.Request) -> web.Response:
    return respond(await _one(request))


@router.route("DELETE", "/api/schedules/{id}", roles=PRODUCERS, tag="schedules",
              response=Deleted, summary="Delete a schedule; no occurrence is submitted after",
              errors=(401, 403, 404))
async def delete_schedule(request: web.Request) -> web.Response:
    schedule = await _one(request)
    await _schedules(request).delete(schedule.id)
    return respond(Deleted())
