"""``leasehold bench`` against an in-process app: every phase counts its own jobs only."""

from __future__ import annotations

import io

from leasehold.api.cli.bench import Bench, BenchConfig
from leasehold.api.cli.bench_report import Result, goals, percentile, print_table
from leasehold.scheduler.benchinfo import RedisProbe
from leasehold.scheduler.config import Settings
from tests.api.conftest import MakeApi


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0


async def test_each_phase_counts_exactly_its_own_jobs(make_api: MakeApi, settings: Settings,
                                                      redis_url: str) -> None:
    api = await make_api(auth=False)
    config = BenchConfig(jobs=120, workers=8, batch=10, batch_workers=3, concurrency=[1, 4],
                         latency_samples=5, queue=f"bench{settings.namespace}")
    probe = RedisProbe(redis_url)
    try:
        bench = Bench(config, api.client.session, [str(api.client.make_url("")).rstrip("/")],
                      probe)
        results = await bench.standard() + await bench.sweep(config.concurrency)
    finally:
        await probe.close()
    by_mode = {(r.mode, r.concurrency, r.sweep): r for r in results}
    assert by_mode[("submit-single", 8, False)].jobs == 100  # max(100, jobs // 5)
    assert by_mode[("submit-bulk", 4, False)].jobs == 120
    assert by_mode[("single", 8, False)].jobs == 120  # not the submit phase's leftovers too
    assert by_mode[("next", 8, False)].jobs == 120  # one request per job
    assert by_mode[("heartbeat", 8, False)].jobs == 100
    assert by_mode[("batch", 3, False)].jobs == 120
    assert by_mode[("long-poll", 1, False)].jobs == 5
    for level in (1, 4):
        assert by_mode[("single", level, True)].jobs == 120
        assert by_mode[("batch", level, True)].jobs == 120
    single = by_mode[("single", 8, False)].row()
    assert single["p50_ms"] <= single["p99_ms"]
    assert single["redis_cpu_us_per_job"] > 0
    assert by_mode[("submit-bulk", 4, False)].row()["redis_bytes_per_queued_job"] > 0
    out = io.StringIO()
    print_table(results, out)
    assert "concurrency sweep:" in out.getvalue()
    assert any("long-poll" in text for text, _ in goals(results))


def test_goals_look_at_the_standard_run_only() -> None:
    fast = Result("batch", "batch", 20_000, 1.0, 8)
    slow = Result("batch", "batch", 100, 1.0, 1, sweep=True)
    assert goals([fast, slow]) == [("batch ≥ 10,000 jobs/s (8 workers): 20,000 jobs/s", True)]
