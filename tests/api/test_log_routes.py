"""Log routes over HTTP: push (both seed shapes), read, SSE tail with resume, end and races;
the job events stream; stream tickets; slow viewers are cut off instead of buffered."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from leasehold.api.app import create_app
from leasehold.api.routes import logs as log_routes
from leasehold.api.routes.logs import EncodedEvents
from leasehold.api.server.appkeys import SERVICES
from leasehold.scheduler.config import Settings
from leasehold.scheduler.logs import LogChunk
from leasehold.scheduler.service import Services
from tests.api.harness import record_route

Client = TestClient[web.Request, web.Application]
ADMIN = "lha_log-routes-admin-6b1d0c9e2f"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
SSE_TIMEOUT = 10.0


def build_app(settings: Settings, **overrides: object) -> web.Application:
    app = create_app(settings.model_copy(update=overrides))
    app.on_response_prepare.append(record_route)  # counts toward the route-coverage check
    return app


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings) -> Client:
    """The app with auth off (``--no-auth``)."""
    return await aiohttp_client(build_app(settings, auth=False))


@pytest.fixture
async def auth_client(aiohttp_client: AiohttpClient, settings: Settings) -> Client:
    """The app with auth on; ``AUTH`` headers call as admin."""
    return await aiohttp_client(build_app(settings, auth=True, admin_token=ADMIN))


def services_of(client: Client) -> Services:
    return client.app[SERVICES]


# -- helpers -----------------------------------------------------------------------------------

async def json_of(resp: ClientResponse, status: int) -> Any:
    text = await resp.text()
    assert resp.status == status, text
    return orjson.loads(text) if text else None


async def submit(client: Client, headers: dict[str, str] | None = None, **job: Any) -> str:
    async with client.post("/api/jobs", json={"command": "make", **job}, headers=headers) as r:
        body = await json_of(r, 201)
    return str(body["id"])


async def claim(client: Client, headers: dict[str, str] | None = None,
                queue: str = "default") -> tuple[str, str]:
    """(job id, lease id) of a claim as worker ``w`` (registered on first use)."""
    async with client.post("/api/workers/register", headers=headers,
                           json={"worker_id": "w", "labels": []}) as r:
        assert r.status in (201, 409), await r.text()
    async with client.post("/api/jobs/claim", headers=headers, json={
            "worker_id": "w", "labels": [], "queues": [queue]}) as r:
        body = await json_of(r, 200)
    return str(body["job"]["id"]), str(body["lease"]["lease_id"])


async def running_job(client: Client, headers: dict[str, str] | None = None) -> tuple[str, str]:
    await submit(client, headers)
    return await claim(client, headers)


async def push(client: Client, lease_id: str, numbers: range, stream: str = "stdout",
               size: int = 0, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Pushes chunks numbered ``numbers`` in seed 003's shape; data is the number (padded)."""
    chunks = [{"data": str(n).ljust(size, "."), "stream": stream, "sequence": n,
               "job_id": "build", "workflow_id": "wf", "timestamp_ms": 1_700_000_000_000 + n}
              for n in numbers]
    async with client.post(f"/api/jobs/{lease_id}/logs", json={"chunks": chunks},
                           headers=headers) as r:
        body: dict[str, Any] = await json_of(r, 202)
    return body


async def complete(client: Client, lease_id: str,
                   headers: dict[str, str] | None = None) -> None:
    async with client.post(f"/api/jobs/{lease_id}/complete", json={}, headers=headers) as r:
        await json_of(r, 200)


async def read_logs(client: Client, job_id: str, **query: str) -> list[dict[str, Any]]:
    async with client.get(f"/api/jobs/{job_id}/logs", params=query) as r:
        body: list[dict[str, Any]] = await json_of(r, 200)
    return body


@dataclass
class Event:
    """One SSE event; a comment line (``: keep-alive``) is an Event with ``comment`` set."""

    event: str | None = None
    id: str | None = None
    data: str = ""
    comment: str | None = None

    def json(self) -> Any:
        return orjson.loads(self.data)


async def events_of(resp: ClientResponse, comments: bool = False) -> AsyncIterator[Event]:
    """Parses ``id:``, ``event:``, ``data:`` lines; ends when the server closes the stream."""
    current, has_fields = Event(), False
    while True:
        raw = await resp.content.readline()
        if not raw:
            return
        line = raw.decode().rstrip("\r\n")
        if not line:
            if has_fields:
                yield current
            current, has_fields = Event(), False
        elif line.startswith(":"):
            if comments:
                yield Event(comment=line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            has_fields = True
            if name == "data":
                current.data = value if not current.data else f"{current.data}\n{value}"
            elif name == "id":
                current.id = value
            elif name == "event":
                current.event = value


async def read_until_end(resp: ClientResponse) -> tuple[list[dict[str, Any]], Event]:
    """Log events until ``event: end``; then checks the server closed the stream."""
    chunks: list[dict[str, Any]] = []
    async with asyncio.timeout(SSE_TIMEOUT):
        events = events_of(resp)
        async for event in events:
            if event.event == "end":
                assert await anext(events, None) is None, "the stream closes after end"
                return chunks, event
            assert event.event == "log"
            chunk = event.json()
            assert chunk["id"] == event.id
            chunks.append(chunk)
    raise AssertionError("the stream closed without an end event")


async def take(events: AsyncIterator[Event], n: int) -> list[Event]:
    async with asyncio.timeout(SSE_TIMEOUT):
        return [await anext(events) for _ in range(n)]


async def wait_for(condition: Callable[[], bool], secs: float = 5) -> None:
    """Polls ``condition`` (server state, which has no event to wait on) for up to ``secs``."""
    for _ in range(int(secs / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition did not hold in time")


def stream_path(job_id: str) -> str:
    return f"/api/jobs/{job_id}/logs/stream"


# -- push and read -----------------------------------------------------------------------------

async def test_both_seed_shapes_are_accepted_and_read_back_with_ids(client: Client) -> None:
    job_id, lease_id = await running_job(client)
    pushed = await push(client, lease_id, range(3))
    assert (pushed["appended"], pushed["dropped"]) == (3, 0)
    last_id = pushed["last_id"]
    async with client.post(f"/api/jobs/{lease_id}/logs",
                           json={"log_chunk": "seed 000 line", "stream_type": "stderr"}) as r:
        assert (await json_of(r, 202))["appended"] == 1
    async with client.post(f"/api/jobs/{lease_id}/logs", json={"log_chunk": "default"}) as r:
        await json_of(r, 202)
    logs = await read_logs(client, job_id)
    assert isinstance(logs, list)
    assert [c["data"] for c in logs] == ["0", "1", "2", "seed 000 line", "default"]
    assert [c["stream"] for c in logs] == ["stdout"] * 3 + ["stderr", "stdout"]
    assert [c["sequence"] for c in logs] == [0, 1, 2, None, None]
    assert all(c["id"] and c["job_id"] == job_id for c in logs)  # seed 003's job_id is ignored
    assert logs[1]["timestamp_ms"] == 1_700_000_000_001
    assert logs[2]["id"] == last_id
    assert len({c["id"] for c in logs}) == 5


async def test_a_resent_batch_is_dropped(client: Client) -> None:
    job_id, lease_id = await running_job(client)
    await push(client, lease_id, range(5))
    again = await push(client, lease_id, range(5))
    assert (again["appended"], again["dropped"], again["last_id"]) == (0, 5, None)
    assert len(await read_logs(client, job_id)) == 5


async def test_reading_pages_with_after_and_limit(client: Client) -> None:
    job_id, lease_id = await running_job(client)
    await push(client, lease_id, range(12))
    every = await read_logs(client, job_id)
    first = await read_logs(client, job_id, limit="5")
    rest = await read_logs(client, job_id, after=first[-1]["id"])
    assert first + rest == every
    assert await read_logs(client, job_id, after=every[-1]["id"]) == []
    async with client.get(f"/api/jobs/{job_id}/logs", params={"after": "yesterday"}) as r:
        assert (await json_of(r, 400))["error"] == "invalid_argument"
    async with client.get(f"/api/jobs/{job_id}/logs", params={"limit": "0"}) as r:
        await json_of(r, 400)
    async with client.get(f"/api/jobs/{job_id[:-3]}zzz/logs") as r:
        await json_of(r, 404)


async def test_a_lost_lease_gets_409_and_stores_nothing(client: Client) -> None:
    job_id, lease_id = await running_job(client)
    await push(client, lease_id, range(2))
    await complete(client, lease_id)
    async with client.post(f"/api/jobs/{lease_id}/logs", json={"log_chunk": "late"}) as r:
        assert (await json_of(r, 409))["error"] == "job_finished"
    async with client.post("/api/jobs/not-a-lease/logs", json={"log_chunk": "x"}) as r:
        assert (await json_of(r, 409))["error"] == "lease_not_found"
    assert [c["data"] for c in await read_logs(client, job_id)] == ["0", "1"]


async def test_a_bad_push_body_is_400(client: Client) -> None:
    _, lease_id = await running_job(client)
    for body in ({}, {"chunks": [{"data": "x", "stream": "stdin"}]},
                 {"chunks": [{"data": "x", "sequence": -1}]}, {"chunks": [{"dat": "x"}]}):
        async with client.post(f"/api/jobs/{lease_id}/logs", json=body) as r:
            assert (await json_of(r, 400))["error"].startswith("invalid_"), body
    shapes: list[dict[str, Any]] = [{}, {"chunks": [{"data": "x"}], "log_chunk": "x"}]
    for shape in shapes:  # neither and both break one rule
        async with client.post(f"/api/jobs/{lease_id}/logs", json=shape) as r:
            details = (await json_of(r, 400))["details"]
        assert [d["msg"] for d in details] == ["send chunks, or log_chunk with stream_type"], shape


# -- SSE ---------------------------------------------------------------------------------------

async def test_stream_sends_history_then_live_then_end(client: Client) -> None:
    job_id, lease_id = await running_job(client)
    await push(client, lease_id, range(3))
    async with client.get(stream_path(job_id)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = events_of(resp)
        history = await take(events, 3)
        await push(client, lease_id, range(3, 6))
        live = await take(events, 3)
        await push(client, lease_id, range(6, 7), stream="stderr")
        await complete(client, lease_id)
        async with asyncio.timeout(SSE_TIMEOUT):
            rest = [event async for event in events]
    stored = await read_logs(client, job_id)
    got = history + live + rest[:-1]
    assert [e.id for e in got] == [c["id"] for c in stored]
    assert [e.json() for e in got] == stored
    assert {e.event for e in got} == {"log"}
    end = rest[-1]
    assert (end.event, end.id, end.json()) == ("end", None, {"status": "success"})


async def test_stream_of_a_finished_job_replays_and_ends(client: Client) -> None:
    job_id, lease_id = await running_job(client)
    await push(client, lease_id, range(4))
    await complete(client, lease_id)
    async with client.get(stream_path(job_id)) as resp:
        chunks, end = await read_until_end(resp)
    assert chunks == await read_logs(client, job_id)
    assert end.json() == {"status": "success"}
    assert services_of(client).hub.viewers == 0


async def test_stream_resumes_after_last_event_id_or_after(client: Client) -> None:
    job_id, lease_id = await running_job(client)
    await push(client, lease_id, range(6))
    stored = await read_logs(client, job_id)
    headers = {"Last-Event-ID": stored[2]["id"]}
    async with client.get(stream_path(job_id), headers=headers) as by_header, \
            client.get(stream_path(job_id), params={"after": stored[4]["id"]}) as by_query:
        await push(client, lease_id, range(6, 8))
        await complete(client, lease_id)
        from_header, _ = await read_until_end(by_header)
        from_query, _ = await read_until_end(by_query)
    stored = await read_logs(client, job_id)
    assert from_header == stored[3:]
    assert from_query == stored[5:]
    async with client.get(stream_path(job_id), headers={"Last-Event-ID": "x"}) as bad:
        assert (await json_of(bad, 400))["error"] == "invalid_argument"
    async with client.get(stream_path(job_id[:-3] + "zzz")) as unknown:
        await json_of(unknown, 404)


async def test_end_event_names_a_failure(client: Client) -> None:
    job_id, lease_id = await running_job(client)
    async with client.get(stream_path(job_id)) as resp:
        await push(client, lease_id, range(1))
        async with client.post(f"/api/jobs/{lease_id}/fail", json={"error": "boom"}) as r:
            await json_of(r, 200)
        chunks, end = await read_until_end(resp)
    assert [c["data"] for c in chunks] == ["0"]
    assert end.json() == {"status": "failure"}


async def test_viewers_connecting_while_chunks_arrive_get_each_chunk_once(
    client: Client,
) -> None:
    """The race: history and live meet with no gap and no duplicate, whenever a viewer joins."""
    job_id, lease_id = await running_job(client)
    rng = random.Random(7)
    total = 300
    pushed = asyncio.Event()

    async def pusher() -> None:
        n = 0
        while n < total:
            size = min(rng.randint(1, 3), total - n)
            await push(client, lease_id, range(n, n + size))
            n += size
            await asyncio.sleep(rng.uniform(0, 0.004))
        pushed.set()

    async def viewer(index: int, delay: float) -> tuple[str | None, list[dict[str, Any]]]:
        await asyncio.sleep(delay)
        resume: str | None = None
        if index % 3 and (known := await read_logs(client, job_id)):
            resume = rng.choice(known)["id"]
        headers = {"Last-Event-ID": resume} if resume and index % 3 == 1 else {}
        params = {"after": resume} if resume and index % 3 == 2 else {}
        async with client.get(stream_path(job_id), headers=headers, params=params) as resp:
            chunks, end = await read_until_end(resp)
        assert end.json() == {"status": "success"}
        return resume, chunks

    pushing = asyncio.create_task(pusher())
    viewers = [asyncio.create_task(viewer(i, rng.uniform(0, 0.6))) for i in range(12)]
    await asyncio.wait_for(pushed.wait(), 30)
    await pushing
    await complete(client, lease_id)
    results = await asyncio.wait_for(asyncio.gather(*viewers), 30)
    stored = await read_logs(client, job_id)
    assert [c["sequence"] for c in stored] == list(range(total))
    ids = [c["id"] for c in stored]
    for resume, chunks in results:
        start = 0 if resume is None else ids.index(resume) + 1
        assert [c["id"] for c in chunks] == ids[start:], f"viewer resumed after {resume}"
    assert services_of(client).hub.viewers == 0


async def test_keep_alive_comments(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_routes, "KEEP_ALIVE_SECS", 0.05)
    job_id, _ = await running_job(client)
    async with client.get(stream_path(job_id)) as resp:
        async with asyncio.timeout(SSE_TIMEOUT):
            first = await anext(events_of(resp, comments=True))
    assert first.comment == "keep-alive"


async def test_a_viewer_that_leaves_a_quiet_stream_is_forgotten(
    client: Client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server lets go of a viewer that closed its connection, though no chunk comes."""
    monkeypatch.setattr(log_routes, "KEEP_ALIVE_SECS", 0.05)
    services = services_of(client)
    job_id, _ = await running_job(client)
    for path in (stream_path(job_id), "/api/events?queue=default"):
        resp = await client.get(path)
        assert resp.status == 200
        await wait_for(lambda: services.hub.viewers == 1)
        resp.close()
        await wait_for(lambda: services.hub.viewers == 0, secs=2)


async def test_a_viewer_too_slow_is_cut_off_and_resumes(client: Client) -> None:
    """A viewer that stops reading is disconnected once its bounded queue overflows (not when it
    reads again): the server holds no more than that for it, and Last-Event-ID gets the rest."""
    services = services_of(client)
    services.hub.maxsize = 5
    job_id, lease_id = await running_job(client)
    big = 64 * 1024
    async with client.get(stream_path(job_id)) as resp:
        assert resp.status == 200
        await wait_for(lambda: services.hub.viewers == 1)
        pushed = 0
        # 4 chunks a push, under the queue's 5, so only a viewer that stopped reading overflows;
        # up to 75 MB, far more than the socket buffers between server and client hold
        while services.hub.viewers and pushed < 1200:
            await push(client, lease_id, range(pushed, pushed + 4), size=big)
            pushed += 4
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.1)
        assert services.hub.viewers == 0, "the stalled viewer still holds a subscription"
        assert 4 < pushed < 1200
        received: list[dict[str, Any]] = []
        with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)):
            async with asyncio.timeout(SSE_TIMEOUT):
                async for event in events_of(resp):
                    received.append(event.json())
            raise aiohttp.ClientConnectionError("closed cleanly")  # a clean close is fine too
    assert len(received) < pushed
    stored = await read_logs(client, job_id, limit="1000")
    assert received == stored[:len(received)]
    headers = {"Last-Event-ID": received[-1]["id"]} if received else {}
    async with client.get(stream_path(job_id), headers=headers) as again:
        await complete(client, lease_id)
        rest, end = await read_until_end(again)
    every = received + rest
    assert [c["sequence"] for c in every] == list(range(pushed))
    assert end.json() == {"status": "success"}


async def test_a_workflow_jobs_log_by_its_seed_003_paths(client: Client) -> None:
    async with client.post("/api/workflows", json={
            "name": "ci", "jobs": [{"id": "build", "command": "make"}]}) as r:
        workflow_id = str((await json_of(r, 201))["id"])
    async with client.post(f"/api/workflows/{workflow_id}/run") as r:
        await json_of(r, 202)
    job_id, lease_id = await claim(client)
    await push(client, lease_id, range(2))
    base = f"/api/workflows/{workflow_id}/jobs/build/logs"
    async with client.get(base) as r:
        chunks = await json_of(r, 200)
    assert chunks == await read_logs(client, job_id)
    assert {(c["job_id"], c["workflow_id"]) for c in chunks} == {("build", workflow_id)}
    async with client.get(base + "/stream", headers={"Last-Event-ID": chunks[0]["id"]}) as resp:
        await complete(client, lease_id)
        streamed, end = await read_until_end(resp)
    assert (streamed, end.json()) == (chunks[1:], {"status": "success"})
    async with client.get(f"/api/workflows/{workflow_id}/jobs/nope/logs") as r:
        await json_of(r, 404)


# -- events ------------------------------------------------------------------------------------

async def collect_job_events(resp: ClientResponse, until: Callable[[dict[str, Any]], bool],
                             ) -> list[Event]:
    got: list[Event] = []
    async with asyncio.timeout(SSE_TIMEOUT):
        async for event in events_of(resp):
            got.append(event)
            if until(event.json()):
                return got
    raise AssertionError("the events stream closed")


async def test_events_stream_job_transitions_of_one_queue(client: Client) -> None:
    async with client.get("/api/events", params={"queue": "qa"}) as resp:
        assert resp.status == 200
        other = await submit(client, queue="qb")
        mine = await submit(client, queue="qa")
        _, lease_id = await claim(client, queue="qa")
        await complete(client, lease_id)
        events = await collect_job_events(
            resp, lambda e: e["job"] == mine and e["to"] == "success")
    assert {e.event for e in events} == {"job"}
    assert all(e.id for e in events)
    bodies = [e.json() for e in events]
    assert {b["queue"] for b in bodies} == {"qa"}
    assert other not in {b["job"] for b in bodies}
    assert [b["to"] for b in bodies if b["job"] == mine][-2:] == ["running", "success"]


async def test_events_stream_filters_by_workflow(client: Client) -> None:
    ids: dict[str, str] = {}
    for name in ("wanted", "other"):
        async with client.post("/api/workflows", json={
                "name": name, "jobs": [{"id": "build", "command": "make"}]}) as r:
            ids[name] = str((await json_of(r, 201))["id"])
    async with client.get("/api/events", params={"workflow_id": ids["wanted"],
                                                 "queue": "default"}) as resp:
        await submit(client)
        for name in ("other", "wanted"):
            async with client.post(f"/api/workflows/{ids[name]}/run") as r:
                await json_of(r, 202)
        for _ in range(3):
            _, lease_id = await claim(client)
            await complete(client, lease_id)
        events = await collect_job_events(resp, lambda e: e["to"] == "success")
    bodies = [e.json() for e in events]
    assert {b["workflow"] for b in bodies} == {ids["wanted"]}
    async with client.get("/api/events", params={"queue": "bad queue!"}) as bad:
        await json_of(bad, 400)


# -- stream tickets ----------------------------------------------------------------------------

async def test_stream_ticket_opens_only_its_own_path(auth_client: Client) -> None:
    client = auth_client
    job_id, lease_id = await running_job(client, AUTH)
    other_id = await submit(client, AUTH)
    await push(client, lease_id, range(2), headers=AUTH)
    await complete(client, lease_id, AUTH)
    async with client.get(stream_path(job_id)) as no_ticket:
        await json_of(no_ticket, 401)
    async with client.post("/api/stream-tickets", json={"path": stream_path(job_id)},
                           headers=AUTH) as r:
        issued = await json_of(r, 201)
    ticket = {"ticket": issued["ticket"]}
    assert issued["expires_at_ms"] > 0
    async with client.get(stream_path(job_id), params=ticket) as resp:
        chunks, end = await read_until_end(resp)
    assert [c["data"] for c in chunks] == ["0", "1"]
    assert end.json() == {"status": "success"}
    async with client.get(stream_path(other_id), params=ticket) as elsewhere:
        assert (await json_of(elsewhere, 401))["error"] == "unauthorized"
    async with client.get("/api/events", params=ticket) as events:
        await json_of(events, 401)
    async with client.get(f"/api/jobs/{job_id}/logs", params=ticket) as not_a_stream:
        await json_of(not_a_stream, 401)  # tickets open SSE routes only
    async with client.get(stream_path(job_id), params={"ticket": "lht_forged"}) as forged:
        await json_of(forged, 401)


async def test_stream_tickets_are_for_streaming_paths_only(auth_client: Client) -> None:
    for path in ("/api/jobs", "/api/jobs/abc/logs", "/api/events/extra", "/metrics"):
        async with auth_client.post("/api/stream-tickets", json={"path": path},
                                    headers=AUTH) as r:
            # the documented pattern of path refuses it when the body is validated
            assert (await json_of(r, 400))["error"] == "invalid_request", path
    async with auth_client.post("/api/stream-tickets", json={"path": "/api/events"}) as r:
        await json_of(r, 401)
    async with auth_client.post("/api/stream-tickets", json={"path": "/api/events"},
                                headers=AUTH) as r:
        ticket = (await json_of(r, 201))["ticket"]
    async with auth_client.get("/api/events", params={"ticket": ticket}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")


def test_encoded_events_are_shared_and_bounded() -> None:
    encode = EncodedEvents(budget=1000)
    chunks = [LogChunk(id=f"1-{n}", job_id="j", stream="stdout", data="x" * 100,
                       timestamp_ms=1) for n in range(20)]
    first = encode("job", chunks[0])
    assert encode("job", chunks[0]) is first  # encoded once, whoever asks
    assert first.startswith(b"id: 1-0\r\nevent: log\r\ndata: {")
    assert first.endswith(b"}\r\n\r\n")
    for chunk in chunks:
        encode("job", chunk)
    assert 0 < encode.size <= 1000
    assert ("job", "1-19") in encode.events
    assert ("job", "1-0") not in encode.events


# -- bounded state -----------------------------------------------------------------------------


async def test_a_viewer_of_a_job_that_never_logged_gets_the_end(client: Client) -> None:
    """The job finishes without a chunk: no log stream is created, and its viewer still ends."""
    job_id, lease_id = await running_job(client)
    async with client.get(stream_path(job_id)) as resp:
        assert resp.status == 200
        await wait_for(lambda: services_of(client).hub.viewers == 1)
        await complete(client, lease_id)
        chunks, end = await read_until_end(resp)
    assert (chunks, end.json()) == ([], {"status": "success"})
    services = services_of(client)
    assert await services.redis.exists(services.logs.key(job_id)) == 0
    async with client.get(stream_path(job_id)) as again:  # a late viewer ends at once
        assert (await read_until_end(again))[1].json() == {"status": "success"}


async def test_a_push_past_the_byte_cap_is_413_and_truncates_once(
    aiohttp_client: AiohttpClient, settings: Settings,
) -> None:
    client = await aiohttp_client(build_app(settings, auth=False, log_max_bytes=4096))
    job_id, lease_id = await running_job(client)
    await push(client, lease_id, range(3), size=1000)
    for numbers in (range(3, 6), range(6, 7)):  # the first crosses the cap, the next is past it
        chunks = [{"data": str(n).ljust(1000, "."), "sequence": n} for n in numbers]
        async with client.post(f"/api/jobs/{lease_id}/logs", json={"chunks": chunks}) as r:
            body = await json_of(r, 413)
        assert body["error"] == "log_too_large"
    stored = await read_logs(client, job_id)
    assert [c["sequence"] for c in stored if c["stream"] != "system"] == [0, 1, 2, 3]
    notices = [c for c in stored if c["stream"] == "system"]
    assert len(notices) == 1
    assert "truncated" in notices[0]["data"]
    assert stored[-1] == notices[0]
