"""Secret routes (admin): store, list and delete secrets; a value is never read back."""

from __future__ import annotations

from aiohttp import web

from leasehold.api.server.appkeys import SERVICES
from leasehold.api.server.http import read_model, respond
from leasehold.api.server.routing import ADMIN, router
from leasehold.scheduler.masking import mask
from leasehold.scheduler.secrets import SecretInfo, SecretSpec, SecretStore


def _store(request: web.Request) -> SecretStore:
    return request.app[SERVICES].scheduler.secrets


async def masked(request: web.Request, lease_id: str, texts: list[str]) -> list[str]:
    """``texts`` a worker sent for a lease's job (log chunks, a failure's error) with the job's
    secret values as ``***``: the agent masks them already; this catches any other client."""
    scheduler = request.app[SERVICES].scheduler
    job_id, q = scheduler.lease_target(lease_id)
    secrets = await scheduler.secrets.masks_for(lease_id, job_id, q)
    return [mask(text, secrets) for text in texts] if secrets else texts


@router.route("PUT", "/api/secrets/{secret}", roles=ADMIN, tag="secrets", body=SecretSpec,
              status=204,
              summary="Store a secret (a string or a JSON object), encrypted; `queues` limits "
              "the queues whose jobs may name it. Jobs submitted later carry the new value; "
              "503 secrets_disabled without LEASEHOLD_SECRETS_KEY",
              errors=(400, 401, 403, 503))
async def put_secret(request: web.Request) -> web.Response:
    store = _store(request)
    store.check_enabled()  # 503 before the body is even read
    spec = await read_model(request, SecretSpec)
    await store.put(request.match_info["secret"], spec)
    return web.Response(status=204)


@router.route("GET", "/api/secrets", roles=ADMIN, tag="secrets", response=list[SecretInfo],
              summary="Every secret's name, queues and last change (never a value)",
              errors=(401, 403, 503))
async def list_secrets(request: web.Request) -> web.Response:
    found = await _store(request).infos()
    return respond(found if found else [])


@router.route("DELETE", "/api/secrets/{secret}", roles=ADMIN, tag="secrets", status=204,
              summary="Delete a secret; jobs submitted before keep the value they were "
              "submitted with", errors=(400, 401, 403, 404, 503))
async def delete_secret(request: web.Request) -> web.Response:
    await _store(request).delete(request.match_info["secret"])
    return web.Response(status=204)
