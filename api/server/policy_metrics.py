"""Prometheus families of the queue policies: verification votes and submit-rate refusals."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from leasehold.scheduler.metrics import Snapshot

# stats counter -> (metric name, help)
POLICY_COUNTERS = {
    "verify_votes": ("leasehold_verification_votes", "Completions recorded as quorum votes"),
    "verify_requeued": ("leasehold_verification_requeued",
                        "Quorum jobs sent back to ready for another worker's vote"),
    "verify_quorum": ("leasehold_verification_quorums", "Quorum jobs whose workers agreed"),
    "verify_no_quorum": ("leasehold_verification_failed",
                         "Quorum jobs that used up their votes without agreement"),
    "submit_rate_limited": ("leasehold_submit_rate_limited",
                            "Jobs refused with 429 by the queue's submit_rate"),
}


def policy_families(snap: Snapshot) -> Iterator[Metric]:
    for counter, (name, text) in POLICY_COUNTERS.items():
        family = CounterMetricFamily(name, text, labels=["queue"])
        for stats in snap.queues:
            family.add_metric([stats.queue], stats.counters.get(counter, 0))
        yield family
