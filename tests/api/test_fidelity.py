"""Over HTTP, payloads, metadata and outputs are served as the exact bytes that were sent: in job
reads, lists, submit and claim replies, upstream outputs and workflow views; and through the
Python client's models."""

from __future__ import annotations

import orjson

from leasehold.api.fleet.client import LeaseholdClient
from tests.api.harness import Api

# (1e400 is valid JSON that orjson, the harness's parser, refuses: see the last test.)
TRICKY = ('{"big": 1234567890123456789, "huge": 123456789012345678901234567890,'
          ' "f": 1.10, "e": 1.5e300, "z": -0.0, "arr": [], "obj": {},'
          ' "nested": {"a": [], "b": [{}]}, "u": "h\\u00e9 ☃"}')
PAYLOAD = '[18446744073709551616, [], {}, 1.50]'
JSON = {"Content-Type": "application/json"}


async def post_raw(api: Api, path: str, body: str, status: int = 200) -> str:
    reply = await api.post(path, data=body.encode(), headers=JSON)
    assert reply.status == status, reply.text
    return reply.text


async def test_submit_read_list_and_claim_keep_the_bytes(api: Api) -> None:
    body = f'{{"command": "x", "queue": "fid", "payload": {PAYLOAD}, "metadata": {TRICKY}}}'
    submitted = await post_raw(api, "/api/jobs", body, 201)
    assert f'"payload":{PAYLOAD}' in submitted and f'"metadata":{TRICKY}' in submitted
    job_id = orjson.loads(submitted)["id"]

    read = (await api.get(f"/api/jobs/{job_id}")).text
    assert f'"payload":{PAYLOAD}' in read and f'"metadata":{TRICKY}' in read
    listed = (await api.get("/api/jobs", params={"queue": "fid"})).text
    assert f'"payload":{PAYLOAD}' in listed and f'"metadata":{TRICKY}' in listed

    await api.register("w-fid")
    claimed = await post_raw(api, "/api/jobs/claim",
                             '{"worker_id": "w-fid", "labels": [], "queues": ["fid"]}')
    assert f'"payload":{PAYLOAD}' in claimed and f'"metadata":{TRICKY}' in claimed
    lease_id = orjson.loads(claimed)["lease"]["lease_id"]
    assert orjson.loads(claimed)["lease"]["ttl_secs"] == 30
    assert '"ttl_secs":30,' in claimed  # an integer, never 30.0

    await post_raw(api, f"/api/jobs/{lease_id}/complete", f'{{"outputs": {TRICKY}}}')
    read = (await api.get(f"/api/jobs/{job_id}")).text
    assert f'"outputs":{TRICKY}' in read


async def test_bulk_submit_and_batch_complete_keep_the_bytes(api: Api) -> None:
    body = ('{"jobs": [{"command": "a", "queue": "bulkfid", "payload": [] },'
            f' {{"command": "b", "queue": "bulkfid", "metadata": {TRICKY}}}]}}')
    reply = await post_raw(api, "/api/jobs/bulk", body, 201)
    assert '"payload":[]' in reply and f'"metadata":{TRICKY}' in reply
    await api.register("w-bulk")
    claims = orjson.loads(await post_raw(
        api, "/api/jobs/claim",
        '{"worker_id": "w-bulk", "queues": ["bulkfid"], "max_jobs": 2}'))["claims"]
    items = ",".join(f'{{"lease_id": "{c["lease"]["lease_id"]}", "outputs": {{"i": {n}, '
                     f'"v": 99999999999999999999, "e": []}}}}' for n, c in enumerate(claims))
    await post_raw(api, "/api/leases/complete", f'{{"completions": [{items}]}}')
    for n, claim in enumerate(claims):
        read = (await api.get(f"/api/jobs/{claim['job']['id']}")).text
        assert f'"outputs":{{"i": {n}, "v": 99999999999999999999, "e": []}}' in read


async def test_upstream_outputs_and_workflow_view_keep_the_bytes(api: Api) -> None:
    created = await api.post("/api/workflows", {"name": "fid", "queue": "wffid", "jobs": [
        {"id": "build", "command": "make", "depends_on": []},
        {"id": "test", "command": "check", "depends_on": ["build"]}]})
    assert created.status == 201, created.text
    workflow_id = created.body["id"]
    assert (await api.post(f"/api/workflows/{workflow_id}/run")).status == 202
    await api.register("w-wf")
    claim_body = '{"worker_id": "w-wf", "labels": [], "queues": ["wffid"]}'
    build = orjson.loads(await post_raw(api, "/api/jobs/claim", claim_body))
    assert build["job"]["upstream_outputs"] == {}
    await post_raw(api, f"/api/jobs/{build['lease']['lease_id']}/complete",
                   f'{{"outputs": {TRICKY}}}')

    claimed = await post_raw(api, "/api/jobs/claim", claim_body)
    assert f'"upstream_outputs":{{"build":{TRICKY}}}' in claimed
    test_id = orjson.loads(claimed)["job"]["id"]
    assert f'"upstream_outputs":{{"build":{TRICKY}}}' in (await api.get(
        f"/api/jobs/{test_id}")).text
    view = (await api.get(f"/api/workflows/{workflow_id}/status")).text
    assert f'"outputs":{TRICKY}' in view
    jobs = {job["id"]: job for job in orjson.loads(view)["jobs"]}
    assert isinstance(jobs["build"]["duration_secs"], int)
    assert isinstance(jobs["build"]["duration_ms"], int)


async def test_outputs_and_metadata_must_be_objects(api: Api) -> None:
    for body in ('{"command": "x", "metadata": []}', '{"command": "x", "metadata": 1}'):
        reply = await api.post("/api/jobs", data=body.encode(), headers=JSON)
        assert (reply.status, reply.body["error"]) == (400, "invalid_request"), reply.text
    for body in ('{"command": "x", "payload": [1,]}', '{"command": "x", "payload": NaN}'):
        reply = await api.post("/api/jobs", data=body.encode(), headers=JSON)
        assert reply.status == 400, reply.text
        assert reply.body["details"][0]["type"] == "json_invalid"
    job = await api.submit(command="x", queue="objfid")
    await api.register("w-obj")
    claim = await api.claim("w-obj", queues=["objfid"])
    reply = await api.post(f"/api/jobs/{claim['lease']['lease_id']}/complete",
                           data=b'{"outputs": []}', headers=JSON)
    assert reply.status == 400, reply.text
    assert (await api.job(job["id"]))["status"] == "running"


async def test_the_python_client_keeps_the_bytes(api: Api) -> None:
    server = str(api.client.make_url("")).rstrip("/")
    async with LeaseholdClient(server, api.token) as client:
        submitted = await client.submit({"command": "x", "queue": "clientfid",
                                         "payload": {"n": 2**70, "l": []}})
        assert submitted.payload is not None
        assert submitted.payload.text == '{"n":1180591620717411303424,"l":[]}'
        await api.register("w-client")
        claims = await client.claim([], queues=["clientfid"], worker_id="w-client")
        await client.complete(claims[0].lease.lease_id, {"big": 2**80, "e": []})
        job = await client.get_job(submitted.id)
        assert job.outputs is not None
        assert job.outputs.text == '{"big":1208925819614629174706176,"e":[]}'
        assert job.outputs["big"] == 2**80


async def test_numbers_out_of_double_range_are_served_as_sent(api: Api) -> None:
    auth = {"Authorization": f"Bearer {api.token}", **JSON}
    body = b'{"command": "x", "payload": {"e": 1e400, "m": -1E-400}}'
    async with api.client.post("/api/jobs", data=body, headers=auth) as resp:
        assert resp.status == 201
        submitted = await resp.text()
    assert '"payload":{"e": 1e400, "m": -1E-400}' in submitted
    job_id = submitted.split('"id":"', 1)[1].split('"', 1)[0]
    async with api.client.get(f"/api/jobs/{job_id}", headers=auth) as resp:
        assert resp.status == 200
        assert '"payload":{"e": 1e400, "m": -1E-400}' in await resp.text()
