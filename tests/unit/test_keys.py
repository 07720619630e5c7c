"""Job and lease ids name their queue, and every key of a queue shares one hash tag."""

from __future__ import annotations

import re

import pytest
from redis.crc import key_slot

from leasehold.scheduler.keys import (
    Keyspace,
    QueueKeys,
    job_of_lease,
    label_set_id,
    lease_id_for,
    new_job_id,
    new_token,
    queue_of_job,
)

QUEUES = ["default", "a", "builds.linux-x86_64", "Q_1", "x" * 64, "a.b.c"]


def test_tokens_are_128_bit_url_safe_and_distinct() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", t) for t in tokens)


@pytest.mark.parametrize("queue", QUEUES)
def test_job_and_lease_ids_round_trip(queue: str) -> None:
    job_id = new_job_id(queue)
    assert queue_of_job(job_id) == queue
    lease_id = lease_id_for(job_id, new_token())
    assert job_of_lease(lease_id) == job_id
    assert queue_of_job(job_of_lease(lease_id) or "") == queue


@pytest.mark.parametrize("job_id", [
    "", "default", "default.", ".AAAAAAAAAAAAAAAAAAAAAA", "default.AAAA",
    "default.AAAAAAAAAAAAAAAAAAAAAAA", "default.AAAAAAAAAAAAAAAAAAAA+/",
    "bad queue.AAAAAAAAAAAAAAAAAAAAAA", "x" * 65 + ".AAAAAAAAAAAAAAAAAAAAAA",
    "{q}.AAAAAAAAAAAAAAAAAAAAAA",
])
def test_malformed_job_ids_have_no_queue(job_id: str) -> None:
    assert queue_of_job(job_id) is None


@pytest.mark.parametrize("lease_id", [
    "", "garbage", "default.AAAAAAAAAAAAAAAAAAAAAA", "default.AAAAAAAAAAAAAAAAAAAAAA.",
    "default.AAAAAAAAAAAAAAAAAAAAAA.short", ".AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
    "bad queue.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
])
def test_malformed_lease_ids_have_no_job(lease_id: str) -> None:
    assert job_of_lease(lease_id) is None


def _tag(key: str) -> str:
    """The part of a key Redis Cluster hashes: between the first '{' and the next '}'."""
    match = re.search(r"\{([^}]*)\}", key)
    assert match and match.group(1), f"{key} has no hash tag"
    return match.group(1)


def _all_keys(q: QueueKeys, job_id: str) -> list[str]:
    return [q.meta, q.labelsets, q.delayed, q.leases, q.index, q.done, q.stats, q.events, q.rate,
            q.job(job_id), q.log(job_id), q.ready(label_set_id(["gpu"]))]


@pytest.mark.parametrize("queue", QUEUES)
def test_all_keys_of_a_queue_share_one_hash_tag_and_slot(queue: str) -> None:
    q = Keyspace("lh").queue(queue)
    keys = _all_keys(q, new_job_id(queue))
    assert {_tag(key) for key in keys} == {f"lh:{queue}"}
    assert len({key_slot(key.encode()) for key in keys}) == 1
    assert len(set(keys)) == len(keys)


def test_scripts_can_derive_job_keys_from_the_meta_key() -> None:
    """lua/lib/base.lua's prefix_of() cuts "meta" off KEYS[1] to build per-job keys."""
    q = Keyspace("ns").queue("builds")
    assert q.meta[: -len("meta")] == q.prefix
    assert q.job("builds.x") == q.prefix + "job:builds.x"


def test_namespaces_and_queues_never_share_keys() -> None:
    a, b = Keyspace("one").queue("q"), Keyspace("two").queue("q")
    c = Keyspace("one").queue("r")
    assert len({a.meta, b.meta, c.meta}) == 3
    assert Keyspace("one").queues != Keyspace("two").queues


def test_label_set_ids_ignore_order_and_duplicates() -> None:
    assert label_set_id(["b", "a"]) == label_set_id(["a", "b", "a"])
    assert label_set_id([]) != label_set_id(["a"])
    assert label_set_id(["a", "b"]) != label_set_id(["ab"])
    assert re.fullmatch(r"[0-9a-f]{16}", label_set_id(["gpu"]))
