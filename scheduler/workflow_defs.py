"""Parses and validates workflow definitions: the JSON API shape and the YAML/JSON format."""

from __future__ import annotations

import shlex
from typing import Annotated, Any

import orjson
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    RootModel,
    ValidationError,
    field_validator,
)

from leasehold.scheduler import errors
from leasehold.scheduler.models import MAX_SECS, Label, QueueName, RetryPolicy, SecretName
from leasehold.scheduler.rawjson import as_json_reads, integral

NodeId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]  # exported as a shell name
EnvValue = str | int | float | bool
MAX_JOBS = 1000
MAX_COMMAND = 1_000_000  # a job's command (JobSpec.command)


class NodeDef(BaseModel):
    """One job of a workflow, normalized."""

    model_config = ConfigDict(extra="forbid")
    id: NodeId
    name: str
    command: str = Field(max_length=MAX_COMMAND)
    depends_on: list[str] = Field(default_factory=list)
    required_labels: list[Label] = Field(default_factory=list, max_length=64)
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    priority: int = Field(default=100, ge=0, le=1000)
    lease_ttl_secs: float | None = Field(default=None, gt=0, le=86400)
    timeout_secs: float | None = Field(default=None, gt=0, le=MAX_SECS)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    secrets: list[SecretName] = Field(
        default_factory=list, max_length=32,
        description="secrets the job's lease holder gets in its claim reply (as a job's)")


class WorkflowDef(BaseModel):
    """A validated workflow: nodes in definition order, dependencies known and acyclic."""

    id: str = ""
    name: str
    trigger: JsonValue = None
    queue: str = "default"
    jobs: list[NodeDef]


# -- the JSON API shape: {"name", "trigger"?, "queue"?, "jobs": [{"id", "command", ...}]} --------

class WorkflowJobListItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: NodeId
    name: str | None = None
    command: str = Field(max_length=MAX_COMMAND)
    depends_on: list[str] = Field(default_factory=list)
    required_labels: list[Label] = Field(default_factory=list, max_length=64)
    max_retries: int | None = Field(default=None, ge=0, le=1000)
    retry_policy: RetryPolicy | None = None
    priority: int = Field(default=100, ge=0, le=1000)
    lease_ttl_secs: float | None = Field(default=None, gt=0, le=86400)
    timeout_secs: float | None = Field(default=None, gt=0, le=MAX_SECS)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    secrets: list[SecretName] = Field(
        default_factory=list, max_length=32,
        description="secrets the job's lease holder gets in its claim reply (as a job's)")
    queue: QueueName | None = None
    # workflow-graph's read-only fields: accepted as input and ignored
    status: JsonValue = None
    duration_secs: JsonValue = None
    started_at: JsonValue = None
    output: JsonValue = None
    ports: JsonValue = None
    children: JsonValue = None
    collapsed: JsonValue = None
    attempt: JsonValue = None


class WorkflowJobList(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=256)
    trigger: JsonValue = None
    queue: QueueName = "default"
    jobs: list[WorkflowJobListItem] = Field(max_length=MAX_JOBS)
    id: JsonValue = None  # a workflow-graph client may echo an id back; the server assigns its own


# -- the YAML/JSON definition format: {"name", "on", "env", "jobs": {id: {needs, run|steps}}} --

class WorkflowStep(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    id: str | None = None
    name: str | None = None
    run: str
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    if_: JsonValue = Field(default=None, alias="if")


class WorkflowFileJob(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True,
        json_schema_extra={  # a run, else at least one step
            "if": {"required": ["run"], "properties": {"run": {"type": "string"}}},
            "else": {"required": ["steps"], "properties": {"steps": {"type": "array",
                                                                      "minItems": 1}}}})
    name: str | None = None
    needs: str | list[str] = Field(default_factory=list)
    run: str | None = None
    steps: list[WorkflowStep] | None = None
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    labels: list[Label] = Field(default_factory=list, max_length=64)
    retries: int = Field(default=0, ge=0, le=1000)
    timeout: JsonValue = None  # parsed by workflow-graph, unused; timeout_secs is ours
    if_: JsonValue = Field(default=None, alias="if")
    priority: int = Field(default=100, ge=0, le=1000)
    retry_policy: RetryPolicy | None = None
    lease_ttl_secs: float | None = Field(default=None, gt=0, le=86400)
    timeout_secs: float | None = Field(default=None, gt=0, le=MAX_SECS)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    secrets: list[SecretName] = Field(
        default_factory=list, max_length=32,
        description="secrets the job's lease holder gets in its claim reply (as a job's)")
    queue: QueueName | None = None

    @field_validator("needs", mode="after")
    @classmethod
    def _list(cls, value: str | list[str]) -> list[str]:
        return [value] if isinstance(value, str) else value


class WorkflowFile(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(min_length=1, max_length=256)
    on: JsonValue = None
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    jobs: dict[NodeId, WorkflowFileJob] = Field(
        default_factory=dict, max_length=MAX_JOBS,
        json_schema_extra={"propertyNames": {"minLength": 1, "maxLength": 128,
                                             "pattern": r"^[A-Za-z0-9_.-]+$"}})
    queue: QueueName = "default"


class WorkflowDocument(RootModel[WorkflowJobList | WorkflowFile]):
    """A workflow definition as posted: the JSON API shape (``jobs`` a list) or the definition
    file shape (``jobs`` a mapping), as JSON or YAML. The server also refuses what a schema
    cannot say: a duplicate job id, an unknown dependency, a cycle, a job naming another queue."""


def _exports(env: dict[str, EnvValue]) -> list[str]:
    return [f"export {key}={shlex.quote(_shell_word(value))}" for key, value in env.items()]


def _shell_word(value: EnvValue) -> str:
    """YAML's ``true`` exports as ``true`` (not Python's ``True``)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _flatten(node_id: str, job: WorkflowFileJob, global_env: dict[str, EnvValue]) -> str:
    """One shell command: global, then job env as exports, then the run or each bannered step."""
    parts = _exports(global_env) + _exports(job.env)
    if job.run is not None:
        parts.append(job.run)
    else:
        for n, step in enumerate(job.steps or [], start=1):
            banner = f"=== {step.name or step.id or f'step {n}'} ==="
            parts.append(f"echo {shlex.quote(banner)}")
            parts.append(f"({' && '.join([*_exports(step.env), step.run])})")
    return " && ".join(parts)


def _from_seed(raw: WorkflowFile) -> WorkflowDef:
    nodes = []
    for node_id, job in raw.jobs.items():
        if job.run is None and not job.steps:
            raise errors.InvalidArgument(f"Job '{node_id}' must have either 'run' or 'steps'")
        _same_queue(raw.queue, node_id, job.queue)
        policy = job.retry_policy or RetryPolicy(max_retries=job.retries)
        nodes.append(NodeDef(
            id=node_id, name=job.name or node_id, command=_flatten(node_id, job, raw.env),
            depends_on=list(job.needs), required_labels=job.labels, retry_policy=policy,
            priority=job.priority, lease_ttl_secs=job.lease_ttl_secs,
            timeout_secs=job.timeout_secs, metadata=job.metadata, secrets=job.secrets))
    return WorkflowDef(name=raw.name, trigger=raw.on, queue=raw.queue, jobs=nodes)


def _from_api(raw: WorkflowJobList) -> WorkflowDef:
    nodes, seen = [], set()
    for job in raw.jobs:
        if job.id in seen:
            raise errors.InvalidArgument(f"duplicate job id '{job.id}'")
        seen.add(job.id)
        _same_queue(raw.queue, job.id, job.queue)
        policy = job.retry_policy or RetryPolicy(max_retries=job.max_retries or 0)
        if job.retry_policy is not None and job.max_retries is not None:
            policy = policy.model_copy(update={"max_retries": job.max_retries})
        nodes.append(NodeDef(
            id=job.id, name=job.name or job.id, command=job.command,
            depends_on=job.depends_on, required_labels=job.required_labels,
            retry_policy=policy, priority=job.priority, lease_ttl_secs=job.lease_ttl_secs,
            timeout_secs=job.timeout_secs, metadata=job.metadata, secrets=job.secrets))
    return WorkflowDef(name=raw.name, trigger=raw.trigger, queue=raw.queue, jobs=nodes)


def _same_queue(queue: str, node_id: str, job_queue: str | None) -> None:
    if job_queue is not None and job_queue != queue:
        raise errors.InvalidArgument(
            f"Job '{node_id}' names queue '{job_queue}', but a workflow lives in one queue "
            f"('{queue}')")


def check_graph(definition: WorkflowDef) -> None:
    """Unknown dependencies and cycles are refused with the exact culprit named."""
    ids = {node.id for node in definition.jobs}
    for node in definition.jobs:
        for dep in node.depends_on:
            if dep not in ids:
                raise errors.InvalidArgument(
                    f"Job '{node.id}' depends on '{dep}', which doesn't exist")
    deps = {node.id: node.depends_on for node in definition.jobs}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node_id: str, path: list[str]) -> None:
        state[node_id] = 1
        for dep in deps[node_id]:
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep):], dep] if dep in path else [node_id, dep]
                raise errors.InvalidArgument("dependency cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[node_id] = 2

    for node_id in deps:
        if node_id not in state:
            visit(node_id, [node_id])


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (a repeated job id would silently vanish)."""


def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, bool):
            key = key_node.value  # YAML 1.1 reads `on:` as true; keep the word as written
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_document(text: str | bytes, fmt: str) -> Any:
    """The raw document of a definition; ``fmt`` is "json" or "yaml"."""
    if fmt == "json":
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise errors.InvalidArgument(f"malformed JSON: {exc}") from None
    try:
        return as_json_reads(yaml.load(text, Loader=_UniqueKeyLoader))  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise errors.InvalidArgument(f"malformed YAML: {exc}") from None


def parse(document: Any) -> WorkflowDef:
    """A validated definition from either accepted shape."""
    if not isinstance(document, dict):
        raise errors.InvalidArgument("a workflow definition must be a mapping with name and jobs")
    try:
        if isinstance(document.get("jobs"), list):
            definition = _from_api(WorkflowJobList.model_validate(integral(document),
                                                                  strict=True))
        else:
            definition = _from_seed(WorkflowFile.model_validate(integral(document), strict=True))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise errors.InvalidArgument(f"invalid workflow definition at {where}: {first['msg']}",
                                     problems=len(exc.errors())) from None
    check_graph(definition)
    return definition
