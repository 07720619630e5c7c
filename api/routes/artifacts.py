"""Artifact routes: a job's lease holder uploads raw bytes under a name (streamed, sha256
recorded); readers list and download them (streamed, ETag = sha256)."""

from __future__ import annotations

from aiohttp import web

from leasehold.api.server.appkeys import SERVICES, SETTINGS
from leasehold.api.server.errors import error_response
from leasehold.api.server.http import principal, respond
from leasehold.api.server.routing import READERS, WORKERS, router
from leasehold.scheduler import errors
from leasehold.scheduler.artifacts import (
    CHUNK_BYTES,
    Artifact,
    ArtifactQuotaExceeded,
    ArtifactStore,
    ArtifactTooLarge,
    TooManyArtifacts,
)

MAX_CONTENT_TYPE = 255
# Stored bytes keep the Content-Type they were sent with; served from the API's (and the
# console's) origin they must never run: an HTML or SVG artifact is a sandboxed document.
UNTRUSTED = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}


def store(request: web.Request) -> ArtifactStore:
    return ArtifactStore(request.app[SERVICES].scheduler, request.app[SETTINGS])


async def check_reader(request: web.Request, artifacts: ArtifactStore, job_id: str) -> None:
    """A worker reads the artifacts of jobs it holds and of their direct upstream jobs."""
    caller = principal(request)
    if caller.role == "worker" and not await artifacts.may_read(job_id, caller.worker_id):
        raise errors.Forbidden("a worker reads only the artifacts of the jobs it holds and of "
                               "their upstream jobs")


@router.route("PUT", "/api/jobs/{id}/artifacts/{name}", roles=WORKERS, tag="artifacts",
              raw_body=True, response=Artifact, status=201,
              summary="Store raw bytes as a job's artifact (the job's lease holder, or an admin; "
                      "Content-Type kept; replaces one of the same name)",
              errors=(400, 401, 403, 404, 409, 413, 507))
async def put_artifact(request: web.Request) -> web.Response:
    job_id, name = request.match_info["id"], request.match_info["name"]
    content_type = request.headers.get("Content-Type", "application/octet-stream")
    try:
        # the body is read here chunk by chunk, never whole: the app's body limit does not apply
        artifact = await store(request).upload(
            job_id, name, content_type[:MAX_CONTENT_TYPE], principal(request).lease_owner,
            request.content.iter_chunked(CHUNK_BYTES), request.content_length)
    except ArtifactTooLarge as exc:
        return error_response(413, exc.code, exc.message, request, extra=exc.details)
    except ArtifactQuotaExceeded as exc:
        return error_response(507, exc.code, exc.message, request, extra=exc.details)
    except TooManyArtifacts as exc:
        return error_response(409, exc.code, exc.message, request, extra=exc.details)
    return respond(artifact, 201)


@router.route("GET", "/api/jobs/{id}/artifacts", roles=(*READERS, "worker"), tag="artifacts",
              response=list[Artifact], summary="A job's artifacts by name",
              errors=(401, 403, 404))
async def list_artifacts(request: web.Request) -> web.Response:
    job_id = request.match_info["id"]
    artifacts = store(request)
    await check_reader(request, artifacts, job_id)
    return respond(await artifacts.list(job_id))


@router.route("GET", "/api/jobs/{id}/artifacts/{name}", roles=(*READERS, "worker"),
              tag="artifacts", raw_response=True, also=(304,),
              summary="An artifact's bytes, streamed (ETag = sha256; If-None-Match gives 304)",
              errors=(401, 403, 404))
async def get_artifact(request: web.Request) -> web.StreamResponse:
    job_id, name = request.match_info["id"], request.match_info["name"]
    artifacts = store(request)
    await check_reader(request, artifacts, job_id)
    art = await artifacts.get(job_id, name)
    etag = f'"{art.sha256}"'
    wanted = request.headers.get("If-None-Match", "")
    if etag in (tag.strip().removeprefix("W/") for tag in wanted.split(",")) or wanted == "*":
        return web.Response(status=304, headers={"ETag": etag})
    response = web.StreamResponse(headers={"ETag": etag, "Content-Type": art.content_type,
                                           **UNTRUSTED})
    response.content_length = art.size
    chunks = artifacts.read(job_id, art)
    first = await anext(chunks, None)  # a missing artifact is still a clean 404 here
    await response.prepare(request)
    if first is not None:
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
    await response.write_eof()
    return response
