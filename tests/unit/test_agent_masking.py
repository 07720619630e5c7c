"""The agent's own masking: what it queues for pushing never holds a secret value."""

from __future__ import annotations

from leasehold.api.fleet.agent import _Slot
from leasehold.scheduler.models import Claim, Job, JobStatus, Lease


def _slot(secrets: dict[str, object] | None) -> _Slot:
    job = Job(id="default.AAAAAAAAAAAAAAAAAAAAAA", job_id="j", queue="default",
              status=JobStatus.RUNNING, enqueued_at_ms=1)
    lease = Lease(lease_id=job.id + ".BBBBBBBBBBBBBBBBBBBBBB", job_id="j", worker_id="w",
                  ttl_secs=30, granted_at_ms=1, expires_at_ms=2, attempt=1)
    return _Slot(Claim.model_validate({"job": job, "lease": lease, "secrets": secrets}))


def test_values_split_over_output_pieces_are_masked_before_pushing() -> None:
    slot = _slot({"token": "tok-123456", "db": {"password": "pw-987"}})
    for piece in ("login with tok-", "123456 now\n", "pass pw-9", "87\n", "", "tail tok"):
        slot.add_line("stdout", piece)
    slot.add_line("stderr", "err pw-987\n")
    slot.end_output()
    pushed = [(p["stream"], p["data"]) for p in slot.pending]
    joined = "".join(data for _, data in pushed)
    assert "tok-123456" not in joined and "pw-987" not in joined
    assert "".join(d for s, d in pushed if s == "stdout") == (
        "login with *** now\npass ***\ntail tok")
    assert ("stderr", "err ***\n") in pushed
    assert [p["sequence"] for p in slot.pending] == list(range(len(slot.pending)))


def test_a_job_without_secrets_pushes_every_piece_as_it_came() -> None:
    slot = _slot(None)
    for piece in ("a", "", "b\n"):
        slot.add_line("stdout", piece)
    slot.end_output()
    assert [p["data"] for p in slot.pending] == ["a", "", "b\n"]
