"""Secrets: values encrypted at rest (Fernet), copied sealed into the jobs that name them, opened
only for the claim reply of the lease holder and to mask the job's logs.

A job is a snapshot: at submit, the sealed value of each secret it names is copied into its own
record (field ``secrets``, a JSON object name -> token), in its queue's hash slot, so the claim
script hands it over in the same round trip that grants the lease (Redis Cluster cannot reach
the ``{<ns>}`` keys from a queue's script). A later PUT or DELETE changes the jobs submitted after
it, never those already queued; retries of a job get the value it was submitted with.
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from typing import cast

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import BaseModel, Field, JsonValue, field_validator
from redis.asyncio import Redis
from redis.exceptions import WatchError

from leasehold.scheduler import errors
from leasehold.scheduler.config import Settings
from leasehold.scheduler.keys import QueueKeys
from leasehold.scheduler.masking import masked_texts
from leasehold.scheduler.models import QueueName, Strict
from leasehold.scheduler.rawjson import as_json_reads

SECRET_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_SECRETS = 10_000
MAX_VALUE_BYTES = 64 * 1024
MAX_PER_JOB = 32
MASK_CACHE = 10_000  # leases whose mask texts this process remembers
RECORD_FIELD = "secrets"


class SecretsDisabled(errors.SchedulerError):
    """No ``LEASEHOLD_SECRETS_KEY``: secrets can be neither stored nor delivered."""

    code = "secrets_disabled"


class SecretUnreadable(errors.SchedulerError):
    """A sealed value that none of the configured keys opens."""

    code = "secret_unreadable"


def disabled() -> SecretsDisabled:
    return SecretsDisabled("secrets are disabled: set LEASEHOLD_SECRETS_KEY (a Fernet key, "
                           "`leasehold secrets keygen`) on every API process")


class SecretSpec(Strict):
    """What an admin PUTs: the value and, optionally, the only queues whose jobs may name it."""

    value: str | dict[str, JsonValue] = Field(description="a string or a JSON object")
    queues: list[QueueName] | None = Field(
        default=None, max_length=1000, description="queues whose jobs may name it (default: all)")

    @field_validator("value")
    @classmethod
    def _bounded(cls, value: str | dict[str, JsonValue]) -> str | dict[str, JsonValue]:
        value = as_json_reads(value)  # the claim reply is encoded with orjson: 64-bit integers
        if len(_dumps(value)) > MAX_VALUE_BYTES:
            raise ValueError(f"is larger than {MAX_VALUE_BYTES} bytes")
        return value


class SecretInfo(BaseModel):
    """A stored secret as listed: never its value."""

    name: str
    queues: list[str] | None = None
    updated_at_ms: int


class Sealer:
    """Encrypts with the first key; opens with any (the others are previous keys in rotation)."""

    def __init__(self, keys: list[str]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> Sealer | None:
        keys = [k.strip() for k in (settings.secrets_key or "").split(",") if k.strip()]
        if not keys:
            return None
        keys += [k.strip() for k in (settings.secrets_key_previous or "").split(",")
                 if k.strip()]
        return cls(keys)

    def seal(self, value: JsonValue) -> str:
        return self._fernet.encrypt(_dumps(value)).decode()

    def open(self, token: str) -> JsonValue:
        try:
            return cast(JsonValue, json.loads(self._fernet.decrypt(token.encode())))
        except InvalidToken:
            raise SecretUnreadable("a secret cannot be decrypted with LEASEHOLD_SECRETS_KEY or "
                                   "LEASEHOLD_SECRETS_KEY_PREVIOUS") from None

    def reseal(self, token: str) -> str:
        """The token encrypted with the current key (it must open with one of the keys)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable("a secret cannot be decrypted with the keys set") from None


class SecretStore:
    """Secret records: one field of ``{<ns>}:secrets`` per name, JSON ``{queues, updated_at_ms,
    value}`` with ``value`` a Fernet token."""

    def __init__(self, redis: Redis, global_prefix: str, sealer: Sealer | None) -> None:
        self.redis = redis
        self.key = global_prefix + "secrets"
        self.sealer = sealer
        self._masks: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.sealer is not None

    def check_enabled(self) -> None:
        self._sealer()

    def _sealer(self) -> Sealer:
        if self.sealer is None:
            raise disabled()
        return self.sealer

    async def put(self, name: str, spec: SecretSpec) -> None:
        sealer = self._sealer()
        _check_name(name)
        if not await self.redis.hexists(self.key, name) and \
                await self.redis.hlen(self.key) >= MAX_SECRETS:
            raise errors.InvalidArgument(f"at most {MAX_SECRETS} secrets")
        record = {"queues": sorted(set(spec.queues)) if spec.queues is not None else None,
                  "updated_at_ms": int(time.time() * 1000), "value": sealer.seal(spec.value)}
        await self.redis.hset(self.key, name, orjson.dumps(record).decode())

    async def infos(self) -> list[SecretInfo]:
        self._sealer()
        raw = cast(dict[str, str], await self.redis.hgetall(self.key))
        return [_info(name, text) for name, text in sorted(raw.items())]

    async def delete(self, name: str) -> None:
        self._sealer()
        _check_name(name)
        if not await self.redis.hdel(self.key, name):
            raise errors.NotFound("no such secret", secret=name)

    async def sealed_for(self, queue: str, names: list[str]) -> str:
        """The job record's ``secrets`` field for a job of ``queue``: JSON name -> token.
        Refuses a name that is unknown or whose queues do not include ``queue``."""
        self._sealer()
        wanted = sorted(set(names))
        texts = cast(list[str | None], await self.redis.hmget(self.key, wanted))
        sealed: dict[str, str] = {}
        for name, text in zip(wanted, texts, strict=True):
            record = orjson.loads(text) if text else None
            if record is None:
                raise errors.Conflict(f"no secret named {name}", secret=name)
            if record["queues"] is not None and queue not in record["queues"]:
                raise errors.Conflict(f"secret {name} may not be used in queue {queue}",
                                      secret=name, queue=queue)
            sealed[name] = record["value"]
        return orjson.dumps(sealed).decode()

    def open_record(self, field: str) -> dict[str, JsonValue]:
        """The values of a job record's ``secrets`` field (SecretUnreadable, SecretsDisabled)."""
        sealed = cast(dict[str, str], orjson.loads(field))
        sealer = self._sealer()
        return {name: sealer.open(token) for name, token in sealed.items()}

    def remember_masks(self, lease_id: str, values: dict[str, JsonValue]) -> None:
        self._masks[lease_id] = tuple(masked_texts(values.values()))
        self._masks.move_to_end(lease_id)
        while len(self._masks) > MASK_CACHE:
            self._masks.popitem(last=False)

    async def masks_for(self, lease_id: str, job_id: str, q: QueueKeys) -> tuple[str, ...]:
        """The texts to mask in the logs of a lease's job: remembered from this process's claim,
        or read from the job's record once per lease (a push to another API process)."""
        found = self._masks.get(lease_id)
        if found is not None:
            return found
        field = cast(str | None, await self.redis.hget(q.job(job_id), RECORD_FIELD))
        values: dict[str, JsonValue] = {}
        if field and self.sealer is not None:
            try:
                values = self.open_record(field)
            except SecretUnreadable:
                values = {}
        self.remember_masks(lease_id, values)
        return self._masks[lease_id]

    async def rotate(self) -> int:
        """Re-encrypts every stored secret with the current key; returns how many."""
        sealer = self._sealer()
        names = cast(list[str], await self.redis.hkeys(self.key))
        for name in names:
            while not await self._reseal_one(sealer, name):
                pass  # changed while we re-encrypted it: read it again
        return len(names)

    async def _reseal_one(self, sealer: Sealer, name: str) -> bool:
        """Re-encrypts one secret unless a PUT or DELETE changed it meanwhile (then False)."""
        async with self.redis.pipeline() as pipe:
            await pipe.watch(self.key)
            text = cast(str | None, await pipe.hget(self.key, name))
            if text is None:
                return True
            record = orjson.loads(text)
            record["value"] = sealer.reseal(record["value"])
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.hset(self.key, name, orjson.dumps(record).decode())
            try:
                await pipe.execute()
            except WatchError:
                return False
        return True


def _dumps(value: JsonValue) -> bytes:
    """A value's JSON (json, not orjson: an object may hold integers past 64 bits)."""
    return json.dumps(value, separators=(",", ":")).encode()


def _check_name(name: str) -> None:
    if not SECRET_NAME.match(name):
        raise errors.InvalidArgument("a secret name must match " + SECRET_NAME.pattern)


def _info(name: str, text: str) -> SecretInfo:
    record = orjson.loads(text)
    return SecretInfo(name=name, queues=record["queues"], updated_at_ms=record["updated_at_ms"])
