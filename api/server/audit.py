"""The audit trail: one ``audit`` log line per administrative action, naming who and from where."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from leasehold.api.server.http import PRINCIPAL, REGISTRATION_TOKEN

log = structlog.get_logger("leasehold.audit")


def actor(request: web.Request) -> dict[str, str | None]:
    """The caller by its token's id and role (never the token itself)."""
    caller = request.get(PRINCIPAL)
    if caller is not None:
        return {"role": caller.role, "token_id": caller.id or None,
                "token_name": caller.name or None}
    if request.get(REGISTRATION_TOKEN) is not None:
        return {"role": "registration", "token_id": None, "token_name": None}
    return {"role": None, "token_id": None, "token_name": None}


def peer(request: web.Request) -> str | None:
    """The connection's address (a proxy's address when one is in front)."""
    return request.remote


def audit(request: web.Request, action: str, **target: Any) -> None:
    """Logs that ``action`` was done on ``target`` (ids only): one line per action."""
    log.info("audit", action=action, actor=actor(request), peer=peer(request), **target)
