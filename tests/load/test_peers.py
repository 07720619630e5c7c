"""``pytest -m load tests/load/test_peers.py``: the peer comparison of ``tests/load/peers.py``
(about ten minutes; needs the ``bench`` extra). Writes docs/bench/results.json and the plot."""

from __future__ import annotations

import json

import pytest

from tests.load import peers


@pytest.mark.load
@pytest.mark.timeout(3600)
def test_peer_comparison_runs_and_records_every_peer() -> None:
    pytest.importorskip("matplotlib")
    assert peers.main([]) == 0
    report = json.loads((peers.OUT / "results.json").read_text())
    assert set(report["peers"]) == set(peers.PEERS)
    assert (peers.OUT / "throughput.png").stat().st_size > 0
