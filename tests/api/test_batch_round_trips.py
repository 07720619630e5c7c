"""Batch heartbeat and batch fail send every lease's script in one round trip, each still fenced
on its own: an unknown or foreign lease fails alone."""

from __future__ import annotations

from typing import Any

from leasehold.api.server.appkeys import SERVICES
from tests.api.harness import Api


class _Spy:
    """Counts what the API process sends to Redis: single commands and pipelines."""

    def __init__(self, client: Any) -> None:
        self.client, self.pipelines = client, 0
        self.commands: list[str] = []
        self._command, self._pipeline = client.execute_command, client.pipeline

    async def command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]))
        return await self._command(*args, **options)

    def pipeline(self, *args: Any, **kw: Any) -> Any:
        self.pipelines += 1
        return self._pipeline(*args, **kw)

    def __enter__(self) -> _Spy:
        self.client.execute_command, self.client.pipeline = self.command, self.pipeline
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.execute_command, self.client.pipeline = self._command, self._pipeline


async def test_batch_heartbeat_and_fail_are_one_round_trip_each(api: Api) -> None:
    worker = await api.register("w-batch-trips")
    for i in range(3):
        await api.submit(command=str(i), queue="bt1", retry_policy={"max_retries": 1})
    leases = [c["lease"]["lease_id"] for c in
              (await worker.claim(queues=["bt1"], max_jobs=3))["claims"]]
    unknown = "bt1.nosuchjobxxxxxxxxxxx.token"
    with _Spy(api.app[SERVICES].redis) as spy:
        beat = await worker.post("/api/leases/heartbeat", {"leases": [
            {"lease_id": lease, "progress": 50} for lease in [*leases, unknown]]})
    assert beat.status == 200, beat.text
    assert [r["ok"] for r in beat.body["results"]] == [True, True, True, False]
    assert spy.commands == [] and spy.pipelines == 1

    with _Spy(api.app[SERVICES].redis) as spy:
        failed = await worker.post("/api/leases/fail", {"failures": [
            {"lease_id": leases[0], "error": "x", "retryable": True},
            {"lease_id": leases[1], "error": "y"}, {"lease_id": unknown, "error": "z"}]})
    assert failed.status == 200, failed.text
    results = failed.body["results"]
    assert [r["ok"] for r in results] == [True, True, False]
    assert results[0]["will_retry"] is True and results[1]["will_retry"] is False
    assert spy.commands == [] and spy.pipelines == 1
