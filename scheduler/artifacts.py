"""Job artifacts: bytes streamed into chunks (Redis by default, or files), committed atomically
under a name, counted against the queue's quota, read back chunk by chunk."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Protocol, cast

import orjson
from pydantic import BaseModel
from redis.client import NEVER_DECODE

from leasehold.scheduler import errors
from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.keys import QueueKeys, new_token, queue_of_job

CHUNK_BYTES = 256 * 1024
MAX_PER_JOB = 100
UPLOAD_TTL_MS = 3_600_000  # chunks of an upload that never commits are collected after this
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Artifact(BaseModel):
    """An artifact as listed: its name, size in bytes, type and SHA-256 (hex)."""

    name: str
    size: int
    content_type: str
    sha256: str
    created_at_ms: int


class StoredArtifact(Artifact):
    upload: str  # where its bytes are: the upload id its chunks were stored under
    chunks: int


class ArtifactTooLarge(errors.SchedulerError):
    code = "artifact_too_large"


class ArtifactQuotaExceeded(errors.SchedulerError):
    code = "artifact_quota_exceeded"


class TooManyArtifacts(errors.SchedulerError):
    code = "too_many_artifacts"


class ArtifactNotFound(errors.NotFound):
    code = "artifact_not_found"


class Backend(Protocol):
    """Where an artifact's bytes live; the index, quota and visibility stay in Redis."""

    async def write(self, q: QueueKeys, job_id: str, upload: str, n: int, chunk: bytes) -> None:
        """Stores chunk ``n`` of an upload (chunks arrive in order)."""

    def read(self, q: QueueKeys, job_id: str, art: StoredArtifact) -> AsyncIterator[bytes]:
        """The artifact's bytes, chunk by chunk."""

    async def discard(self, q: QueueKeys, job_id: str, upload: str) -> None:
        """Drops an upload's bytes (a refused upload, or one replaced under the same name)."""


class RedisBackend:
    """Chunks in one HASH per upload, under the job's queue hash tag, so every API process
    serves them; the commit script persists them and the reaper's purge deletes them."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.redis = scheduler.redis

    @staticmethod
    def key(q: QueueKeys, upload: str) -> str:
        return f"{q.prefix}artdata:{upload}"

    async def write(self, q: QueueKeys, job_id: str, upload: str, n: int, chunk: bytes) -> None:
        key = self.key(q, upload)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, str(n), chunk)
            pipe.pexpire(key, UPLOAD_TTL_MS)
            await pipe.execute()

    async def read(self, q: QueueKeys, job_id: str, art: StoredArtifact) -> AsyncIterator[bytes]:
        key = self.key(q, art.upload)
        for n in range(art.chunks):
            # raw bytes: the client decodes replies to str everywhere else
            chunk: bytes | None = await self.redis.execute_command(  # type: ignore[no-untyped-call]
                "HGET", key, str(n), **{NEVER_DECODE: True})
            if chunk is None:  # replaced or purged while being read
                raise ArtifactNotFound("the artifact was replaced or deleted while being read")
            yield chunk

    async def discard(self, q: QueueKeys, job_id: str, upload: str) -> None:
        await self.redis.delete(self.key(q, upload))


class FileBackend:
    """One file per upload under ``<root>/<job id>/``; ``sweep`` removes the folders of jobs
    that retention has purged (``leasehold webhooks`` runs it)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, job_id: str, upload: str) -> Path:
        return self.root / job_id / upload

    async def write(self, q: QueueKeys, job_id: str, upload: str, n: int, chunk: bytes) -> None:
        path = self.path(job_id, upload)

        def append() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab" if n else "wb") as file:
                file.write(chunk)

        await asyncio.to_thread(append)

    async def read(self, q: QueueKeys, job_id: str, art: StoredArtifact) -> AsyncIterator[bytes]:
        try:
            file = await asyncio.to_thread(self.path(job_id, art.upload).open, "rb")
        except FileNotFoundError:
            raise ArtifactNotFound("the artifact's file is missing") from None
        try:
            while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
                yield chunk
        finally:
            file.close()

    async def discard(self, q: QueueKeys, job_id: str, upload: str) -> None:
        await asyncio.to_thread(self.path(job_id, upload).unlink, missing_ok=True)

    async def sweep(self, scheduler: Scheduler) -> int:
        """Removes the folders of jobs that no longer exist; the number removed."""
        removed = 0
        folders = await asyncio.to_thread(lambda: [p for p in self.root.iterdir() if p.is_dir()]
                                          if self.root.is_dir() else [])
        for folder in folders:
            queue = queue_of_job(folder.name)
            if queue is None:
                continue
            if not await scheduler.redis.exists(scheduler.queue_keys(queue).job(folder.name)):
                await asyncio.to_thread(shutil.rmtree, folder, True)
                removed += 1
        return removed


def backend_for(scheduler: Scheduler, settings: Settings) -> Backend:
    if settings.artifact_dir:
        return FileBackend(Path(settings.artifact_dir))
    return RedisBackend(scheduler)


class ArtifactStore:
    """Uploads, lists and reads the artifacts of jobs."""

    def __init__(self, scheduler: Scheduler, settings: Settings) -> None:
        self.scheduler = scheduler
        self.settings = settings
        self.backend = backend_for(scheduler, settings)

    def _keys(self, job_id: str) -> QueueKeys:
        queue = queue_of_job(job_id)
        if queue is None:
            raise errors.JobNotFound("no such job", job_id=job_id)
        return self.scheduler.queue_keys(queue)

    async def check_writer(self, job_id: str, worker_id: str) -> QueueKeys:
        """The job's keys, when ``worker_id`` ("" = an admin) may write its artifacts now."""
        q = self._keys(job_id)
        status, holder, state = await self.scheduler.redis.hmget(
            q.job(job_id), ["status", "worker_id", "lease_state"])
        if status is None:
            raise errors.JobNotFound("no such job", job_id=job_id)
        if worker_id and (status != "running" or holder != worker_id or state != "active"):
            raise errors.Forbidden("only the worker holding the job's active lease (or an "
                                   "admin) may write its artifacts")
        return q

    async def may_read(self, job_id: str, worker_id: str) -> bool:
        """A worker reads the artifacts of a job it holds, or of a direct upstream dependency of
        a job it holds (a downstream workflow job fetching its inputs)."""
        q = self._keys(job_id)
        holder, dependants = await self.scheduler.redis.hmget(
            q.job(job_id), ["worker_id", "dependants"])
        if holder == worker_id:
            return True
        for dep in orjson.loads(dependants or "[]"):
            if await self.scheduler.redis.hget(q.job(dep), "worker_id") == worker_id:
                return True
        return False

    async def upload(self, job_id: str, name: str, content_type: str, worker_id: str,
                     body: AsyncIterable[bytes], declared: int | None) -> Artifact:
        """Streams ``body`` into the backend (never more than a chunk in memory), then commits."""
        if not NAME.match(name):
            raise errors.InvalidArgument("an artifact name is 1-128 of A-Z a-z 0-9 . _ - and "
                                         "starts with a letter or digit")
        limit = self.settings.artifact_max_bytes
        if declared is not None and declared > limit:
            raise ArtifactTooLarge(f"an artifact holds at most {limit} bytes", max_bytes=limit)
        q = await self.check_writer(job_id, worker_id)
        used = int(await self.scheduler.redis.get(q.prefix + "artbytes") or 0)
        if declared is not None and used + declared > self.settings.artifact_quota_bytes:
            raise self._quota(used)
        upload = new_token()
        try:
            size, chunks, digest = await self._store(q, job_id, upload, body, limit)
            reply = await self.scheduler.scripts.artifact_commit(
                q, job_id, name, upload, size, content_type, digest, worker_id,
                self.settings.artifact_quota_bytes, MAX_PER_JOB, chunks)
        except BaseException:
            await asyncio.shield(self.backend.discard(q, job_id, upload))
            raise
        return await self._committed(q, job_id, name, upload, reply)

    async def _store(self, q: QueueKeys, job_id: str, upload: str, body: AsyncIterable[bytes],
                     limit: int) -> tuple[int, int, str]:
        sha = hashlib.sha256()
        size = chunks = 0
        buffer = bytearray()
        async for data in body:
            size += len(data)
            if size > limit:
                raise ArtifactTooLarge(f"an artifact holds at most {limit} bytes",
                                       max_bytes=limit)
            sha.update(data)
            buffer += data
            while len(buffer) >= CHUNK_BYTES:
                await self.backend.write(q, job_id, upload, chunks, bytes(buffer[:CHUNK_BYTES]))
                del buffer[:CHUNK_BYTES]
                chunks += 1
        if buffer:
            await self.backend.write(q, job_id, upload, chunks, bytes(buffer))
            chunks += 1
        return size, chunks, sha.hexdigest()

    async def _committed(self, q: QueueKeys, job_id: str, name: str, upload: str,
                         reply: list[str]) -> Artifact:
        status = reply[0]
        if status != "OK":
            await self.backend.discard(q, job_id, upload)  # the script dropped Redis chunks
        if status == "NOT_FOUND":
            raise errors.JobNotFound("no such job", job_id=job_id)
        if status == "NOT_OWNER":
            raise errors.Forbidden("the job's lease ended during the upload; only its lease "
                                   "holder (or an admin) may write its artifacts")
        if status == "TOO_MANY":
            raise TooManyArtifacts(f"a job holds at most {MAX_PER_JOB} artifacts")
        if status == "QUOTA":
            raise self._quota(int(reply[1]))
        if reply[1]:
            await self.backend.discard(q, job_id, reply[1])  # the one this replaced
        return await self.get(job_id, name)

    def _quota(self, used: int) -> ArtifactQuotaExceeded:
        quota = self.settings.artifact_quota_bytes
        return ArtifactQuotaExceeded(
            f"the queue's artifacts would pass their quota of {quota} bytes "
            "(LEASEHOLD_ARTIFACT_QUOTA_BYTES); they are freed when their jobs' results expire",
            quota_bytes=quota, used_bytes=used)

    async def list(self, job_id: str) -> list[Artifact]:
        q = self._keys(job_id)
        if not await self.scheduler.redis.exists(q.job(job_id)):
            raise errors.JobNotFound("no such job", job_id=job_id)
        index = cast(dict[str, str], await self.scheduler.redis.hgetall(f"{q.prefix}art:{job_id}"))
        return [Artifact.model_validate_json(index[name]) for name in sorted(index)]

    async def get(self, job_id: str, name: str) -> StoredArtifact:
        q = self._keys(job_id)
        text = await self.scheduler.redis.hget(f"{q.prefix}art:{job_id}", name)
        if text is None:
            await self.scheduler.get(job_id)  # an unknown job is a 404 of its own
            raise ArtifactNotFound("the job has no artifact of that name", name=name)
        return StoredArtifact.model_validate_json(text)

    def read(self, job_id: str, art: StoredArtifact) -> AsyncIterator[bytes]:
        return self.backend.read(self._keys(job_id), job_id, art)
