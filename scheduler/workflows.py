"""``Workflows``: stored definitions, runs of them as ordinary jobs, and their status."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import cast

import orjson
import structlog
from pydantic import BaseModel, Field, JsonValue
from redis.asyncio import Redis

from leasehold.scheduler import codec, errors
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.keys import label_set_id, new_job_id, new_token
from leasehold.scheduler.models import Job, JobSpec
from leasehold.scheduler.rawjson import RawObject
from leasehold.scheduler.scripts import raise_for
from leasehold.scheduler.secrets import RECORD_FIELD
from leasehold.scheduler.workflow_defs import NodeDef, WorkflowDef, load_document, parse

log = structlog.get_logger("leasehold.workflows")
DEFAULT_TRIGGER = "manual"
SAMPLE = Path(__file__).parent / "samples" / "ci-1.yml"
HISTORY_PRUNE = 10  # expired runs looked for in a workflow's history per new run
FORMATS = {".json": "json", ".yml": "yaml", ".yaml": "yaml"}


class WorkflowJob(BaseModel):
    """A job as the workflow view shows it, plus ``uid`` (its global job id)."""

    id: str
    name: str
    status: str
    command: str
    depends_on: list[str]
    duration_secs: int | None = Field(default=None, description="whole seconds, rounded down")
    duration_ms: int | None = None
    started_at: int | None = Field(default=None, description="ms since the epoch")
    output: str | None = None
    required_labels: list[str]
    max_retries: int
    attempt: int
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    ports: list[JsonValue] = Field(default_factory=list)
    outputs: RawObject | None = None
    error: str | None = None
    uid: str | None = None


class WorkflowView(BaseModel):
    id: str
    name: str
    trigger: JsonValue = None
    jobs: list[WorkflowJob]
    queue: str
    run_id: str | None = None
    status: str = "idle"


class RunSummary(BaseModel):
    run_id: str
    status: str
    started_at_ms: int
    finished_at_ms: int | None = None
    jobs: dict[str, str] = Field(default_factory=dict, description="job name -> job id")


class Workflows:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.redis: Redis = scheduler.redis
        self.keys = scheduler.keys
        prefix = self.keys.global_prefix
        self._index = prefix + "workflows"
        self._seq = prefix + "workflow-seq"
        self._def_prefix = prefix + "workflow:"

    # -- definitions ---------------------------------------------------------------------------

    async def create(self, definition: WorkflowDef, workflow_id: str | None = None) -> WorkflowView:
        """Stores a definition; a given id (a file stem) replaces that workflow's definition."""
        workflow_id = workflow_id or str(uuid.uuid4())
        stored = definition.model_copy(update={"id": workflow_id})
        key = self._def_prefix + workflow_id
        if not await self.redis.exists(key):
            seq = await self.redis.incr(self._seq)
            await self.redis.zadd(self._index, {workflow_id: seq})
        await self._seal(stored)  # an unknown or unusable secret is refused before it is stored
        await self.redis.set(key, stored.model_dump_json())
        await self.scheduler.remember_queue(stored.queue)
        return await self.status(workflow_id)

    async def definition(self, workflow_id: str) -> WorkflowDef:
        raw = cast(str | None, await self.redis.get(self._def_prefix + workflow_id))
        if raw is None:
            raise errors.WorkflowNotFound("no such workflow", workflow_id=workflow_id)
        return WorkflowDef.model_validate_json(raw)

    async def load_dir(self, directory: Path) -> list[str]:
        """Loads ``*.yml``, ``*.yaml``, ``*.json`` (file stem = id); a bad file names itself."""
        definitions = read_dir(directory)
        for workflow_id, definition in definitions:
            await self.create(definition, workflow_id)
        loaded = [workflow_id for workflow_id, _ in definitions]
        log.info("workflows_loaded", directory=str(directory), workflows=loaded)
        return loaded

    async def create_sample(self) -> WorkflowView:
        return await self.create(parse(load_document(SAMPLE.read_bytes(), "yaml")), "ci-1")

    # -- runs ------------------------------------------------------------------------------------

    async def run(self, workflow_id: str) -> RunSummary:
        """Starts a fresh run: roots become claimable, the others wait on their dependencies."""
        definition = await self.definition(workflow_id)
        queue = definition.queue
        ids = {node.id: new_job_id(queue) for node in definition.jobs}
        dependants: dict[str, list[str]] = {node.id: [] for node in definition.jobs}
        for node in definition.jobs:
            for dep in node.depends_on:
                dependants[dep].append(ids[node.id])
        run_id = new_token()
        sealed = await self._seal(definition)
        encoded = [[*self._encode(definition, node, ids, dependants[node.id], workflow_id,
                                  run_id), *sealed.get(node.id, [])]
                   for node in definition.jobs]
        if not encoded:
            raise errors.Conflict("the workflow has no jobs to run")
        reply = await self.scheduler.scripts.enqueue(
            self.scheduler.queue_keys(queue), encoded, None, workflow_id, run_id,
            codec.dumps(ids))
        if reply[0] == "RUN_ACTIVE":
            raise errors.Conflict("the workflow has an active run", workflow_id=workflow_id,
                                  run_id=reply[1])
        raise_for(reply, workflow_id=workflow_id)
        if not await self.redis.exists(self._def_prefix + workflow_id):
            # Deleted while this run was being written: the run goes with its workflow.
            await self._forget_runs(workflow_id, queue)
            raise errors.WorkflowNotFound("no such workflow", workflow_id=workflow_id)
        await self._keep_history(workflow_id, queue)
        return RunSummary(run_id=run_id, status="running", started_at_ms=int(reply[1]), jobs=ids)

    async def start(self, workflow_id: str) -> tuple[RunSummary, bool]:
        """A fresh run and True; while a run is active, that run and False (nothing changes)."""
        try:
            return await self.run(workflow_id), True
        except errors.Conflict as exc:
            active = str(exc.details.get("run_id", ""))
            queue = (await self.definition(workflow_id)).queue
            record = cast(dict[str, str], await self.redis.hgetall(
                self.scheduler.queue_keys(queue).prefix + f"wfrun:{active}"))
            if not record:  # the active run ended meanwhile: start a fresh one
                return await self.run(workflow_id), True
            return _summary(record), False

    async def _keep_history(self, workflow_id: str, queue: str) -> None:
        """A running workflow's history and run counter do not expire (an ended run sets them
        to expire with its results), and the history forgets runs that already expired.

        The oldest few entries are checked per run, so the history holds live runs only."""
        q = self.scheduler.queue_keys(queue)
        runs_key = q.prefix + f"wfruns:{workflow_id}"
        oldest = cast(list[str], await self.redis.zrange(runs_key, 0, HISTORY_PRUNE - 1))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.persist(runs_key)
            pipe.persist(q.prefix + f"wf:{workflow_id}")
            for run_id in oldest:
                pipe.exists(q.prefix + f"wfrun:{run_id}")
            found = await pipe.execute()
        gone = [run_id for run_id, exists in zip(oldest, found[2:], strict=True) if not exists]
        if gone:
            await self.redis.zrem(runs_key, *gone)

    async def delete(self, workflow_id: str) -> tuple[int, int]:
        """Removes a definition and its run history; an active run is cancelled first.

        Returns (jobs cancelled, runs removed). The runs' jobs stay until their retention ends.
        """
        definition = await self.definition(workflow_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._def_prefix + workflow_id)
            pipe.zrem(self._index, workflow_id)
            await pipe.execute()  # from here no new run can start
        return await self._forget_runs(workflow_id, definition.queue)

    async def _forget_runs(self, workflow_id: str, queue: str) -> tuple[int, int]:
        q = self.scheduler.queue_keys(queue)
        reply = await self.scheduler.scripts.cancel_run(q, workflow_id, None)
        cancelled = int(reply[2]) if reply[0] == "OK" else 0
        runs_key = q.prefix + f"wfruns:{workflow_id}"
        removed = 0
        while run_ids := cast(list[str], await self.redis.zrange(runs_key, 0, 499)):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(*(q.prefix + f"wfrun:{run_id}" for run_id in run_ids))
                pipe.zrem(runs_key, *run_ids)
                await pipe.execute()
            removed += len(run_ids)
        await self.redis.delete(q.prefix + f"wf:{workflow_id}")
        return cancelled, removed

    async def _seal(self, definition: WorkflowDef) -> dict[str, list[str]]:
        """Each node naming secrets: the record field that carries them, sealed as a submit's
        (a name unknown or not allowed in the workflow's queue is 409)."""
        return {node.id: [RECORD_FIELD, await self.scheduler.secrets.sealed_for(
                    definition.queue, node.secrets)]
                for node in definition.jobs if node.secrets}

    def _encode(self, definition: WorkflowDef, node: NodeDef, ids: dict[str, str],
                dependants: list[str], workflow_id: str, run_id: str) -> list[str]:
        spec = JobSpec(queue=definition.queue, command=node.command,
                       required_labels=node.required_labels, priority=node.priority,
                       retry_policy=node.retry_policy, lease_ttl_secs=node.lease_ttl_secs,
                       timeout_secs=node.timeout_secs, metadata=node.metadata)
        labels = sorted(set(node.required_labels))
        default_ttl = codec.ms(self.scheduler.settings.result_ttl_secs)
        fields = codec.spec_fields(spec, node.id, default_ttl)
        fields.update(workflow_id=workflow_id, run_id=run_id,
                      deps=codec.dumps([ids[d] for d in node.depends_on]),
                      dependants=codec.dumps(dependants), deps_left=str(len(node.depends_on)))
        pairs = [item for kv in fields.items() for item in kv]
        placement = "waiting" if node.depends_on else "ready"
        return [ids[node.id], label_set_id(labels), codec.dumps(labels), str(node.priority),
                "0", "0", "", placement, *pairs]

    async def cancel(self, workflow_id: str) -> int:
        """Cancels the active run's unfinished jobs; returns how many (0 with no active run)."""
        definition = await self.definition(workflow_id)
        reply = await self.scheduler.scripts.cancel_run(
            self.scheduler.queue_keys(definition.queue), workflow_id, None)
        return int(reply[2]) if reply[0] == "OK" else 0

    async def runs(self, workflow_id: str, limit: int = 100) -> list[RunSummary]:
        definition = await self.definition(workflow_id)
        q = self.scheduler.queue_keys(definition.queue)
        run_ids = cast(list[str], await self.redis.zrevrange(
            q.prefix + f"wfruns:{workflow_id}", 0, limit - 1))
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hgetall(q.prefix + f"wfrun:{run_id}")
            records = cast(list[dict[str, str]], await pipe.execute())
        return [_summary(record) for record in records if record]

    async def current_run(self, workflow_id: str, queue: str) -> RunSummary | None:
        q = self.scheduler.queue_keys(queue)
        newest = cast(list[str], await self.redis.zrevrange(
            q.prefix + f"wfruns:{workflow_id}", 0, 0))
        if not newest:
            return None
        record = cast(dict[str, str], await self.redis.hgetall(q.prefix + f"wfrun:{newest[0]}"))
        return _summary(record) if record else None

    # -- views -----------------------------------------------------------------------------------

    async def status(self, workflow_id: str) -> WorkflowView:
        definition = await self.definition(workflow_id)
        run = await self.current_run(workflow_id, definition.queue)
        jobs: dict[str, Job] = {}
        if run is not None:
            q = self.scheduler.queue_keys(definition.queue)
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in run.jobs.values():
                    pipe.hgetall(q.job(job_id))
                records = cast(list[dict[str, str]], await pipe.execute())
            jobs = {r["job_id"]: codec.job_from_record(r) for r in records if r}
        return WorkflowView(
            id=workflow_id, name=definition.name,
            # workflow-graph's Workflow.trigger is a string: "manual" when none was given
            trigger=DEFAULT_TRIGGER if definition.trigger is None else definition.trigger,
            queue=definition.queue, run_id=run.run_id if run else None,
            status=run.status if run else "idle",
            jobs=[_job_view(node, jobs.get(node.id)) for node in definition.jobs])

    async def list(self, limit: int, offset: int, status: str | None) -> list[WorkflowView]:
        """In creation order; ``status`` keeps workflows with at least one job in that status.

        With ``status``, ``offset`` counts matching workflows ("page 2 of running").
        """
        views: list[WorkflowView] = []
        start, skip = (offset, 0) if status is None else (0, offset)
        while len(views) < limit:
            batch = limit if status is None else max(limit, 100)
            ids = cast(list[str], await self.redis.zrange(self._index, start, start + batch - 1))
            if not ids:
                break
            start += len(ids)
            for workflow_id in ids:
                try:
                    view = await self.status(workflow_id)
                except errors.WorkflowNotFound:
                    continue
                if status is None or any(job.status == status for job in view.jobs):
                    if skip:
                        skip -= 1
                        continue
                    views.append(view)
            if status is None:
                break
        return views[:limit]

    async def job_of(self, workflow_id: str, name: str) -> str:
        """The global id of job ``name`` in the workflow's newest run."""
        definition = await self.definition(workflow_id)
        run = await self.current_run(workflow_id, definition.queue)
        if run is None or name not in run.jobs:
            raise errors.JobNotFound("no such job in the workflow's current run",
                                     workflow_id=workflow_id, job=name)
        return run.jobs[name]


def read_dir(directory: Path) -> list[tuple[str, WorkflowDef]]:
    """Every definition file of a directory, parsed; an invalid one raises naming the file."""
    found = []
    for path in sorted(directory.iterdir()):
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None or not path.is_file():
            continue
        try:
            found.append((path.stem, parse(load_document(path.read_bytes(), fmt))))
        except errors.InvalidArgument as exc:
            raise errors.InvalidArgument(f"{path}: {exc.message}") from None
    return found


def _summary(record: dict[str, str]) -> RunSummary:
    finished = record.get("finished_at_ms")
    return RunSummary(run_id=record["run_id"], status=record.get("status", "running"),
                      started_at_ms=int(record["started_at_ms"]),
                      finished_at_ms=int(finished) if finished else None,
                      jobs=orjson.loads(record.get("jobs") or "{}"))


def _job_view(node: NodeDef, job: Job | None) -> WorkflowJob:
    view = WorkflowJob(id=node.id, name=node.name, status="queued", command=node.command,
                       depends_on=node.depends_on, required_labels=node.required_labels,
                       max_retries=node.retry_policy.max_retries, attempt=0,
                       metadata=node.metadata)
    if job is None:
        return view
    duration_ms = None
    if job.started_at_ms is not None and job.finished_at_ms is not None:
        duration_ms = job.finished_at_ms - job.started_at_ms
    return view.model_copy(update={
        "status": job.status.value, "attempt": job.attempt, "duration_ms": duration_ms,
        "duration_secs": duration_ms // 1000 if duration_ms is not None else None,
        "started_at": job.started_at_ms or None,
        "output": job.error, "outputs": job.outputs, "error": job.error, "uid": job.id})
