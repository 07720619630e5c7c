"""Tokens and principals: admin tokens from settings; API and registration tokens in Redis."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, cast

import orjson
from redis.asyncio import Redis

from leasehold.scheduler import codec, errors
from leasehold.scheduler.keys import Keyspace, new_token, queue_of_job
from leasehold.scheduler.scripts import Scripts

if TYPE_CHECKING:
    from leasehold.scheduler.authcache import AuthCache

ROLES = ("admin", "submitter", "viewer", "worker", "metrics")
API_ROLES = ("admin", "submitter", "viewer", "metrics")
MAX_REGISTRATION_TTL_SECS = 86400
STREAM_TICKET_TTL_SECS = 60.0


def digest(token: str) -> str:
    """What Redis stores instead of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def auth_channel(namespace: str) -> str:
    """The channel that tells every API process to forget a changed token or worker."""
    return f"{{{namespace}}}:auth"


def new_secret(prefix: str) -> str:
    """A 256-bit random token; the prefix says its kind to people and secret scanners."""
    return prefix + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``role`` decides what they may do; ``worker_id`` which leases are theirs."""

    kind: str
    role: str
    id: str = ""
    name: str = ""
    worker_id: str = ""
    drain: bool = False
    # A worker's registered labels and registration time, read with its token in one round trip.
    labels: frozenset[str] = frozenset()
    registered_at_ms: int = 0
    # The queues the token (or the registration token of the worker) is limited to; None: all.
    queues: frozenset[str] | None = None
    # The auth cache's generation when this principal was known valid (-1: no cache); a claim
    # compares it after claiming to learn whether the worker changed meanwhile.
    generation: int = -1

    def may(self, queue: str) -> bool:
        """Whether this caller may submit, read, claim or stream in ``queue``."""
        return self.queues is None or queue in self.queues

    def require(self, *queues: str) -> None:
        """Raises 403 ``queue_forbidden`` unless the caller may act in every one of ``queues``."""
        for queue in queues:
            if not self.may(queue):
                raise errors.QueueForbidden(f"this token may not act in queue {queue}",
                                            queue=queue)

    def require_job(self, job_id: str) -> None:
        """``require`` for the queue a job (or lease) id names; a malformed id passes (the
        call then answers 404 as for any unknown id)."""
        if self.queues is not None:
            queue = queue_of_job(job_id) or queue_of_job(job_id.rpartition(".")[0])
            if queue is not None:
                self.require(queue)

    @property
    def lease_owner(self) -> str:
        """The worker id leases are checked against; "" (no check) for non-workers."""
        return self.worker_id if self.role == "worker" else ""


ANONYMOUS_ADMIN = Principal(kind="anonymous", role="admin", name="auth off")


class TokenStore:
    """Checks presented tokens and issues API and registration tokens (stored hashed only)."""

    def __init__(self, redis: Redis, scripts: Scripts, keys: Keyspace,
                 admin_tokens: list[str], metrics_tokens: list[str] | None = None,
                 cache: AuthCache | None = None) -> None:
        self.redis = redis
        self.cache = cache
        self.scripts = scripts
        self.keys = keys
        self._admin_digests = {digest(token) for token in admin_tokens if token}
        # Configured like admin tokens, so a scraper has a credential before any API call.
        self._metrics_digests = {digest(token) for token in metrics_tokens or [] if token}

    async def authenticate(self, token: str) -> Principal | None:
        token_digest = digest(token)
        if token_digest in self._admin_digests:
            return Principal(kind="admin", role="admin", name="admin token")
        if token_digest in self._metrics_digests:
            return Principal(kind="metrics", role="metrics", name="metrics token")
        cache = self.cache
        generation = -1 if cache is None else cache.generation
        if cache is not None:
            known = cache.get(token_digest)
            if known is not None:
                return replace(known, generation=generation)
        reply = await self.scripts.authenticate(self.keys, token_digest)
        if reply[0] != "OK":
            return None
        _, kind, role, token_id, name, worker_id, drain, labels, registered, queues = reply
        found = Principal(kind=kind, role=role, id=token_id, name=name, worker_id=worker_id,
                          drain=bool(int(drain)),
                          labels=frozenset(orjson.loads(labels)) if labels else frozenset(),
                          registered_at_ms=int(registered) if registered else 0,
                          queues=_queues(queues), generation=generation)
        if cache is not None:
            cache.put(token_digest, found, generation)
        return found

    async def create_api_token(self, role: str, name: str,
                               queues: list[str] | None = None) -> tuple[str, str]:
        """Returns (id, token); the token is shown once and never stored. With ``queues`` the
        token acts only in those queues."""
        if role not in API_ROLES:
            raise errors.InvalidArgument(f"role must be one of {', '.join(API_ROLES)}")
        token_id, token = new_token(), new_secret("lha_")
        token_digest = digest(token)
        extra = ["queues", codec.dumps(sorted(set(queues)))] if queues is not None else []
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.token(token_digest), items=[
                "kind", "api", "role", role, "id", token_id, "name", name, *extra])
            pipe.hset(self.keys.api_tokens, token_id, token_digest)
            await pipe.execute()
        return token_id, token

    async def delete_api_token(self, token_id: str) -> None:
        token_digest = cast(str | None, await self.redis.hget(self.keys.api_tokens, token_id))
        if token_digest is None:
            raise errors.TokenNotFound("no such token", token_id=token_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.token(token_digest))
            pipe.hdel(self.keys.api_tokens, token_id)
            await pipe.execute()
        await self.announce(f"token {token_digest}")

    async def announce(self, change: str) -> None:
        """Every API process forgets what it remembered of a token or worker (``token
        <digest>``, ``worker <id>`` or ``all``) at once, so a change takes effect everywhere;
        a process with no cache of its own (the CLI) still tells the others."""
        if self.cache is not None:
            await self.cache.announce(change)
        else:
            await self.redis.publish(auth_channel(self.keys.namespace), change)

    async def create_stream_ticket(self, who: Principal, path: str,
                                   ttl_secs: float = STREAM_TICKET_TTL_SECS) -> tuple[str, int]:
        """A short-lived ticket that authenticates GET ``path`` only (EventSource sends no headers).

        Returns (ticket, expires_at_ms). It may be reused until it expires, so a browser's
        automatic reconnect works.
        """
        ticket = new_secret("lht_")
        sec, usec = await self.redis.time()
        expires_at_ms = int(sec) * 1000 + int(usec) // 1000 + codec.ms(ttl_secs)
        key = self.keys.ticket(digest(ticket))
        async with self.redis.pipeline(transaction=True) as pipe:
            queues = [] if who.queues is None else ["queues", codec.dumps(sorted(who.queues))]
            pipe.hset(key, items=["kind", who.kind, "role", who.role, "id", who.id,
                                  "worker_id", who.worker_id, "path", path, *queues])
            pipe.pexpireat(key, expires_at_ms)
            await pipe.execute()
        return ticket, expires_at_ms

    async def check_ticket(self, ticket: str, path: str) -> Principal | None:
        record = cast(dict[str, str], await self.redis.hgetall(self.keys.ticket(digest(ticket))))
        if not record or record.get("path") != path:
            return None
        return Principal(kind=record["kind"], role=record["role"], id=record.get("id", ""),
                         worker_id=record.get("worker_id", ""),
                         queues=_queues(record.get("queues", "")))

    async def is_registration_token(self, token: str) -> bool:
        """Whether ``token`` is a live registration token (registration re-checks and consumes
        it atomically); lets a registration route refuse a bad token before reading its body."""
        return bool(await self.redis.exists(self.keys.regtoken(digest(token))))

    async def create_registration_token(
        self, ttl_secs: float, uses: int, queues: list[str] | None = None,
    ) -> tuple[str, str, int]:
        """Returns (id, token, expires_at_ms) for a token that registers ``uses`` workers (with
        ``queues``, workers that act only in those queues)."""
        if not 0 < ttl_secs <= MAX_REGISTRATION_TTL_SECS:
            raise errors.InvalidArgument(f"ttl_secs must be in (0, {MAX_REGISTRATION_TTL_SECS}]")
        if not 1 <= uses <= 10_000:
            raise errors.InvalidArgument("uses must be 1..10000")
        token_id, token = new_token(), new_secret("lhr_")
        sec, usec = await self.redis.time()
        expires_at_ms = int(sec) * 1000 + int(usec) // 1000 + codec.ms(ttl_secs)
        key = self.keys.regtoken(digest(token))
        async with self.redis.pipeline(transaction=True) as pipe:
            extra = ["queues", codec.dumps(sorted(set(queues)))] if queues is not None else []
            pipe.hset(key, items=["id", token_id, "uses_left", uses, *extra])
            pipe.pexpireat(key, expires_at_ms)
            await pipe.execute()
        return token_id, token, expires_at_ms


def _queues(raw: str) -> frozenset[str] | None:
    """The stored queue list of a token ("" = every queue)."""
    return frozenset(cast(list[str], orjson.loads(raw))) if raw else None
