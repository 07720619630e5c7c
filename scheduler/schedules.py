"""Schedules: jobs submitted by the reaper at each occurrence of a cron expression or interval.

Each due occurrence is enqueued exactly once, whatever the number of reapers: the enqueue script
stores a schedule's job only when its occurrence is later than the last one recorded for that
schedule (``P sched:<id>``, in the job's queue), so a second reaper's call for the same
occurrence stores nothing. A reaper enqueues only the latest occurrence that is due, so the
occurrences missed while no reaper ran are run once, not once each.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import ClassVar, cast
from zoneinfo import ZoneInfo, available_timezones

import structlog
from croniter import CroniterBadDateError, croniter
from pydantic import ConfigDict, Field, field_validator, model_validator

from leasehold.scheduler import codec, errors
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import MAX_SECS, RAW_FIELDS, JobSpec, Secs, Strict
from leasehold.scheduler.rawjson import loads_keeping

log = structlog.get_logger("leasehold.schedules")

MAX_SCHEDULES = 10_000
SCHEDULE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
ZONES = sorted(available_timezones())
_ZONE_SET = frozenset(ZONES)


def _cron_field(number: str) -> str:
    item = rf"(\*|(?:{number})(?:-(?:{number}))?)(?:/[1-9][0-9]?)?"
    return rf"{item}(?:,{item})*"


_MINUTE = _cron_field(r"[0-5]?[0-9]")
# minute hour day-of-month month day-of-week [second]: numbers, ranges, lists and steps (every
# string it matches is a cron expression croniter reads; names like MON are not taken).
CRON = (rf"^{_MINUTE} {_cron_field(r'[01]?[0-9]|2[0-3]')} "
        rf"{_cron_field(r'0?[1-9]|[12][0-9]|3[01]')} {_cron_field(r'0?[1-9]|1[0-2]')} "
        rf"{_cron_field(r'[0-7]')}(?: {_MINUTE})?$")


class ScheduleSpec(Strict):
    """What a producer posts: a job and when to submit it (``cron`` or ``every_secs``)."""

    raw_json_fields: ClassVar[frozenset[str]] = RAW_FIELDS
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["cron"], "properties": {"cron": {"type": "string"}}},
        {"required": ["every_secs"], "properties": {"every_secs": {"type": "number"}}}]})

    id: str = Field(pattern=SCHEDULE_ID.pattern, examples=["nightly-report"])
    cron: str | None = Field(default=None, max_length=256, pattern=CRON, examples=["0 3 * * *"],
                             description="a cron expression: minute hour day-of-month month "
                             "day-of-week, and optionally seconds; numbers, ranges, lists and "
                             "/steps (a day that never comes, like 31 2, never runs)")
    every_secs: Secs | None = Field(default=None, ge=1, le=MAX_SECS,
                                    description="an interval; the first run is one interval "
                                    "after the schedule's creation")
    timezone: str | None = Field(default=None, examples=["Europe/Paris"],
                                 json_schema_extra={"enum": [*ZONES, None]},
                                 description="the IANA time zone of cron (default UTC)")
    job: JobSpec

    @field_validator("cron")
    @classmethod
    def _known_cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError("is not a cron expression croniter understands")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in _ZONE_SET:
            raise ValueError("is not a known IANA time zone")
        return value

    @model_validator(mode="after")
    def _one_rule(self) -> ScheduleSpec:
        if (self.cron is None) == (self.every_secs is None):
            raise ValueError("give exactly one of cron or every_secs")
        return self

    def latest(self, created_ms: int, now_ms: int) -> int | None:
        """The latest occurrence (ms) at or before ``now_ms`` and after creation, if any."""
        if self.every_secs is not None:
            period = codec.ms(self.every_secs)
            k = (now_ms - created_ms) // period
            return created_ms + k * period if k >= 1 else None
        zone = ZoneInfo(self.timezone or "UTC")
        start = datetime.fromtimestamp(now_ms / 1000, tz=UTC).astimezone(zone)
        try:
            prev = croniter(cast(str, self.cron), start).get_prev(datetime)
        except CroniterBadDateError:  # a day that never comes (31 February)
            return None
        at = int(prev.timestamp() * 1000)
        return at if at > created_ms else None


class Schedule(ScheduleSpec):
    """A stored schedule."""

    created_at_ms: int
    last_run_ms: int | None = Field(default=None, description="the last occurrence enqueued")


class Schedules:
    """Schedule records (one HASH field each under the namespace) and the reaper's due check."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.key = scheduler.keys.global_prefix + "schedules"
        self._done: dict[str, int] = {}  # schedule id -> last occurrence this process enqueued

    async def create(self, spec: ScheduleSpec) -> Schedule:
        redis = self.scheduler.redis
        if await redis.hlen(self.key) >= MAX_SCHEDULES:
            raise errors.Conflict(f"at most {MAX_SCHEDULES} schedules: delete one first")
        schedule = Schedule(**dict(spec), created_at_ms=await self.scheduler.now_ms())
        if not await redis.hsetnx(self.key, spec.id, codec.dumps(schedule.model_dump())):
            raise errors.Conflict("a schedule with this id exists", schedule_id=spec.id)
        await self.scheduler.remember_queue(spec.job.queue)
        return schedule

    async def list(self) -> list[Schedule]:
        raw = cast(dict[str, str], await self.scheduler.redis.hgetall(self.key))
        found = [_load(text) for _, text in sorted(raw.items())]
        return [await self._with_last(s) for s in found]

    async def get(self, schedule_id: str) -> Schedule:
        text = cast(str | None, await self.scheduler.redis.hget(self.key, schedule_id))
        if text is None:
            raise errors.NotFound("no such schedule", schedule_id=schedule_id)
        return await self._with_last(_load(text))

    async def delete(self, schedule_id: str) -> None:
        schedule = await self.get(schedule_id)
        await self.scheduler.redis.hdel(self.key, schedule_id)
        await self.scheduler.redis.delete(self._last_key(schedule))
        self._done.pop(schedule_id, None)

    def _last_key(self, schedule: Schedule) -> str:
        return self.scheduler.queue_keys(schedule.job.queue).prefix + "sched:" + schedule.id

    async def _with_last(self, schedule: Schedule) -> Schedule:
        last = await self.scheduler.redis.get(self._last_key(schedule))
        return schedule.model_copy(update={"last_run_ms": int(last) if last else None})

    async def run_due(self, now_ms: int | None = None) -> int:
        """Enqueues the latest due occurrence of every schedule (the script drops repeats);
        returns how many jobs this call stored."""
        now = now_ms if now_ms is not None else await self.scheduler.now_ms()
        raw = cast(dict[str, str], await self.scheduler.redis.hgetall(self.key))
        stored = 0
        for schedule_id, text in raw.items():
            schedule = _load(text)
            due = schedule.latest(schedule.created_at_ms, now)
            if due is None or due <= self._done.get(schedule_id, -1):
                continue
            started = time.perf_counter()
            try:
                done = await self.scheduler.submit_bulk([schedule.job], now_ms,
                                                        schedule=f"{schedule_id} {due}")
            except errors.SchedulerError as exc:  # over submit_rate: tried again next pass
                log.warning("schedule_submit_failed", schedule=schedule_id, error=exc.message)
                continue
            self._done[schedule_id] = due
            if done:
                stored += 1
                log.info("schedule_enqueued", schedule=schedule_id, occurrence_ms=due,
                         job=done[0].job.id, ms=round((time.perf_counter() - started) * 1000, 2))
        for gone in set(self._done) - set(raw):
            del self._done[gone]
        return stored


def _load(text: str) -> Schedule:
    return Schedule.model_validate(loads_keeping(text, RAW_FIELDS))
