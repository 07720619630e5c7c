"""Webhook result delivery, Redis side: the URL guard (SSRF), signatures, and the per-queue set
of due deliveries that survives restarts (filled by the finishing script)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from leasehold.scheduler import errors
from leasehold.scheduler.config import Settings
from leasehold.scheduler.core import Scheduler
from leasehold.scheduler.keys import QueueKeys

SIGNATURE_HEADER = "X-Leasehold-Signature"
MAX_URL = 2048
MAX_RETRY_MS = 3_600_000
CLAIM_BATCH = 50
# Cloud metadata endpoints, named even where a broader rule already refuses them.
METADATA = frozenset({ipaddress.ip_address("169.254.169.254"),
                      ipaddress.ip_address("fd00:ec2::254")})
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookRefused(errors.InvalidArgument):
    code = "webhook_refused"


def blocked(ip: Address) -> str | None:
    """Why a delivery must not connect to ``ip`` (None: a public address)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA:
        return "a cloud metadata address"
    for reason, hit in (("a loopback address", ip.is_loopback),
                        ("a link-local address", ip.is_link_local),
                        ("a multicast address", ip.is_multicast),
                        ("an unspecified address", ip.is_unspecified),
                        ("a private or unique-local address", ip.is_private),
                        ("a reserved address", ip.is_reserved)):
        if hit:
            return reason
    return None


async def lookup(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (tests replace this to fake DNS)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Target:
    """A checked webhook URL and the addresses a delivery may connect to."""

    url: str
    host: str
    port: int
    addresses: list[str]


def parse_url(url: str) -> tuple[str, int]:
    """The host and port of an http(s) URL; WebhookRefused for anything else."""
    if len(url) > MAX_URL:
        raise WebhookRefused(f"the webhook URL is longer than {MAX_URL} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise WebhookRefused("the webhook URL must be http:// or https://")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookRefused("the webhook URL has an invalid port") from None
    if not parts.hostname:
        raise WebhookRefused("the webhook URL names no host")
    return parts.hostname, port


async def check_url(url: str, allow_private: bool) -> Target:
    """Resolves the URL's host; refuses it when any address is not public (unless
    ``allow_private``), so a name cannot point a delivery at an internal service."""
    host, port = parse_url(url)
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = await lookup(host, port)
        except OSError as exc:
            raise WebhookRefused(f"the webhook host {host} does not resolve: {exc}") from None
    if not addresses:
        raise WebhookRefused(f"the webhook host {host} does not resolve")
    if not allow_private:
        for address in addresses:
            reason = blocked(ipaddress.ip_address(address))
            if reason is not None:
                raise WebhookRefused(f"the webhook host {host} resolves to {address}, {reason}; "
                                     "set LEASEHOLD_WEBHOOK_ALLOW_PRIVATE=1 to allow it",
                                     address=address)
    return Target(url, host, port, addresses)


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the body>``, the ``X-Leasehold-Signature`` value."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_delay_ms(attempt: int, base_secs: float) -> int:
    """Exponential backoff after failed attempt number ``attempt`` (1-based)."""
    return min(int(base_secs * 1000 * 2 ** (attempt - 1)), MAX_RETRY_MS)


def webhook_mode_rule(modes: list[str]) -> dict[str, Any]:
    """A schema rule: mode ``webhook`` has a ``webhook`` object; the other ``modes`` have none
    (if/then/else: client generators read it as the plain object it is)."""
    return {"if": {"required": ["mode"], "properties": {"mode": {"const": "webhook"}}},
            "then": {"required": ["webhook"], "properties": {"webhook": {"type": "object"}}},
            "else": {"properties": {"mode": {"enum": modes}, "webhook": {"type": "null"}}}}


def webhook_fields(url: str, headers: dict[str, str]) -> dict[str, str]:
    """The job record fields that make the finishing script queue a delivery."""
    return {"webhook_url": url, "webhook_headers": orjson.dumps(headers).decode()}


@dataclass(frozen=True)
class Delivery:
    queue: str
    job_id: str
    url: str
    headers: dict[str, str]
    attempt: int  # this attempt's number, 1-based


class WebhookDeliveries:
    """The due-delivery sets of every queue: take a batch, record each attempt's outcome."""

    def __init__(self, scheduler: Scheduler, settings: Settings) -> None:
        self.scheduler = scheduler
        self.settings = settings

    def visibility_ms(self) -> int:
        # longer than one attempt, so two deliverers never post the same attempt at once
        return int(self.settings.webhook_timeout_secs * 1000) * 3 + 5000

    async def take(self, queue: str) -> list[Delivery]:
        q = self.scheduler.queue_keys(queue)
        reply = await self.scheduler.scripts.webhook_claim(q, CLAIM_BATCH, self.visibility_ms())
        out = []
        for i in range(1, len(reply), 4):
            job_id, url, headers, deliveries = reply[i:i + 4]
            out.append(Delivery(queue, job_id, url, _headers(headers),
                                len(orjson.loads(deliveries or "[]")) + 1))
        return out

    async def take_all(self) -> list[Delivery]:
        due: list[Delivery] = []
        for queue in await self.scheduler.queues():
            due += await self.take(queue)
        return due

    async def record(self, delivery: Delivery, status_code: int | None, error: str) -> bool:
        """Records the attempt; True when another attempt is scheduled."""
        ok = status_code is not None and 200 <= status_code < 300
        again = not ok and delivery.attempt < self.settings.webhook_max_attempts
        retry = retry_delay_ms(delivery.attempt, self.settings.webhook_retry_base_secs) \
            if again else None
        q: QueueKeys = self.scheduler.queue_keys(delivery.queue)
        await self.scheduler.scripts.webhook_record(q, delivery.job_id, delivery.attempt,
                                                    status_code, error[:500], retry)
        return again


def _headers(text: str) -> dict[str, str]:
    value: Any = orjson.loads(text or "{}")
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
