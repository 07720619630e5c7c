"""Secrets in the scheduler: key rotation, an unreadable sealed value, and the rotate command."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import redis.asyncio as aioredis
from cryptography.fernet import Fernet

from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.models import JobSpec, JobStatus
from leasehold.scheduler.secrets import SecretSpec

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


async def _scheduler(redis: aioredis.Redis, settings: Settings, key: str | None,
                     previous: str | None = None) -> Scheduler:
    scheduler = Scheduler(redis, settings.model_copy(
        update={"secrets_key": key, "secrets_key_previous": previous}))
    await scheduler.start()
    return scheduler


async def test_a_new_key_reads_old_values_through_the_previous_key_until_rotated(
        redis: aioredis.Redis, settings: Settings, redis_url: str) -> None:
    old = await _scheduler(redis, settings, OLD)
    await old.secrets.put("api", SecretSpec(value="v1"))
    queued = (await old.submit(JobSpec(command="x", secrets=["api"]))).job

    rotating = await _scheduler(redis, settings, NEW, previous=OLD)
    claim = (await rotating.claim("w1", [])).claims[0]
    assert (claim.job.id, claim.secrets) == (queued.id, {"api": "v1"})

    env = {**os.environ, "LEASEHOLD_REDIS_URL": redis_url,
           "LEASEHOLD_NAMESPACE": settings.namespace, "LEASEHOLD_SECRETS_KEY": NEW,
           "LEASEHOLD_SECRETS_KEY_PREVIOUS": OLD}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "leasehold.api.cli", "secrets", "rotate"],
        env=env, capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "re-encrypted 1 secrets"), done.stderr

    new_only = await _scheduler(redis, settings, NEW)
    await new_only.submit(JobSpec(command="x", secrets=["api"]))
    assert (await new_only.claim("w1", [])).claims[0].secrets == {"api": "v1"}
    assert [s.name for s in await new_only.secrets.infos()] == ["api"]


async def test_a_claimed_job_whose_secret_no_key_opens_fails_with_a_clear_error(
        redis: aioredis.Redis, settings: Settings) -> None:
    old = await _scheduler(redis, settings, OLD)
    await old.secrets.put("api", SecretSpec(value="v1"))
    job = (await old.submit(JobSpec(command="x", secrets=["api"]))).job
    plain = (await old.submit(JobSpec(command="y"))).job

    other_key = await _scheduler(redis, settings, NEW)
    batch = await other_key.claim("w1", [], max_jobs=2)
    assert [c.job.id for c in batch.claims] == [plain.id]
    failed = await other_key.get(job.id)
    assert failed.status == JobStatus.FAILURE
    assert failed.error is not None and "LEASEHOLD_SECRETS_KEY" in failed.error

    no_key = await _scheduler(redis, settings, None)
    await old.retry(job.id)
    assert (await no_key.claim("w1", [])).claims == []
    again = await no_key.get(job.id)
    assert again.status == JobStatus.FAILURE and "secrets are disabled" in (again.error or "")
