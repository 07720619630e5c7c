"""Builds every Redis key name; all keys of one queue share the hash tag ``{<ns>:<queue>}``."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

import orjson

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22}$")


def new_token() -> str:
    """A 128-bit random, URL-safe token (22 characters)."""
    return secrets.token_urlsafe(16)


def new_job_id(queue: str) -> str:
    """A job id names its queue, so any call finds the job's keys in one round trip."""
    return f"{queue}.{new_token()}"


def lease_id_for(job_id: str, token: str) -> str:
    return f"{job_id}.{token}"


def queue_of_job(job_id: str) -> str | None:
    """The queue a job id belongs to, or None when the id is malformed."""
    queue, _, token = job_id.rpartition(".")
    if not _TOKEN.match(token) or not QUEUE_NAME.match(queue):
        return None
    return queue


def job_of_lease(lease_id: str) -> str | None:
    """The job id a lease id belongs to, or None when the id is malformed."""
    job_id, _, token = lease_id.rpartition(".")
    if not _TOKEN.match(token) or queue_of_job(job_id) is None:
        return None
    return job_id


def label_set_id(labels: list[str]) -> str:
    """A stable id for a set of required labels: jobs with equal sets share one ready queue."""
    canonical = orjson.dumps(sorted(set(labels)))
    return hashlib.sha1(canonical, usedforsecurity=False).hexdigest()[:16]


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one queue; the Lua header of each script says what each one holds."""

    prefix: str

    @property
    def meta(self) -> str:
        return self.prefix + "meta"

    @property
    def labelsets(self) -> str:
        return self.prefix + "labelsets"

    @property
    def delayed(self) -> str:
        return self.prefix + "delayed"

    @property
    def leases(self) -> str:
        return self.prefix + "leases"

    @property
    def index(self) -> str:
        return self.prefix + "index"

    @property
    def done(self) -> str:
        return self.prefix + "done"

    @property
    def stats(self) -> str:
        return self.prefix + "stats"

    @property
    def events(self) -> str:
        return self.prefix + "events"

    @property
    def rate(self) -> str:
        return self.prefix + "rate"

    @property
    def webhooks(self) -> str:
        """ZSET job id -> when its next webhook delivery attempt is due (ms)."""
        return self.prefix + "webhooks"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def log(self, job_id: str) -> str:
        return f"{self.prefix}log:{job_id}"

    def ready(self, lsid: str) -> str:
        return f"{self.prefix}ready:{lsid}"

    @property
    def due_channel(self) -> str:
        """Pub/sub channel on which scripts announce a new earliest deadline to reapers."""
        return self.prefix + "due"


@dataclass(frozen=True)
class Keyspace:
    """Key names under one namespace (``LEASEHOLD_NAMESPACE``)."""

    namespace: str = "lh"

    def queue(self, name: str) -> QueueKeys:
        return QueueKeys(prefix=f"{{{self.namespace}:{name}}}:")

    @property
    def queues(self) -> str:
        """ZSET queue name -> last activity (ms): queues with jobs, settings or recent use."""
        return self.global_prefix + "queues"

    @property
    def legacy_queues(self) -> str:
        """The SET of queue names older versions kept (no hash tag); merged into ``queues``."""
        return f"{self.namespace}:queues"

    # Workers and tokens share the namespace's own hash tag, so their scripts run on Cluster too.
    @property
    def global_prefix(self) -> str:
        return f"{{{self.namespace}}}:"

    @property
    def token_prefix(self) -> str:
        return self.global_prefix + "token:"

    def token(self, digest: str) -> str:
        return self.token_prefix + digest

    @property
    def api_tokens(self) -> str:
        """HASH token id -> digest of every API token (for listing and deleting by id)."""
        return self.global_prefix + "api-tokens"

    def ticket(self, digest: str) -> str:
        return self.global_prefix + "ticket:" + digest

    def regtoken(self, digest: str) -> str:
        return self.global_prefix + "regtoken:" + digest

    @property
    def worker_prefix(self) -> str:
        return self.global_prefix + "worker:"

    def worker(self, worker_id: str) -> str:
        return self.worker_prefix + worker_id

    @property
    def workers(self) -> str:
        return self.global_prefix + "workers"

    @property
    def worker_names(self) -> str:
        return self.global_prefix + "worker-names"

    @property
    def reaper(self) -> str:
        """HASH ``last_pass_ms``, ``pass_duration_ms`` and ``passes`` of the reapers: liveness."""
        return self.global_prefix + "reaper"
