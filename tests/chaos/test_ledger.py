"""The checker itself: each must-be-zero class is found when its fault is planted, and a clean
history passes (no Redis: synthetic ledgers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.ledger import (
    MUST_BE_ZERO,
    JobRecord,
    LeaseCall,
    Ledger,
    Submit,
    Transition,
    check,
)

NOW = 1_000_000


def _t(n: int, job: str, src: str, dst: str, attempt: int = 0, lease: str = "") -> Transition:
    return Transition(f"{n}-0", job, src, dst, attempt, lease, n)


def _run(job: str, lease: str, n: int = 1, attempt: int = 0, end: str = "success"
         ) -> list[Transition]:
    return [_t(n, job, "", "queued"), _t(n + 1, job, "queued", "running", attempt, lease),
            _t(n + 2, job, "running", end, attempt, lease)]


def _record(job: str, key: str | None, status: str = "success", expires: int = 0) -> JobRecord:
    return JobRecord(job, key, status, 0, "", expires)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    found = Ledger(tmp_path / "executions.log")
    found.record(Submit("k1", "ok", "j1"))
    return found


def test_a_clean_history_passes(ledger: Ledger) -> None:
    ledger.executions_file.write_text("start j1 0\nfinish j1 0\n")
    report = check(ledger, [_record("j1", "k1")], _run("j1", "L1"), NOW, 200)
    report.assert_clean()
    assert report.counts["ok"] == 1 and report.counts["dup_exec"] == 0


def test_expiry_then_rerun_is_clean_and_reports_the_duplicate_execution(ledger: Ledger) -> None:
    ledger.executions_file.write_text("start j1 0\nstart j1 1\nfinish j1 1\n")
    history = [_t(1, "j1", "", "queued"), _t(2, "j1", "queued", "running", 0, "L1"),
               _t(3, "j1", "running", "queued", 1, "L1"),
               _t(4, "j1", "queued", "running", 1, "L2"),
               _t(5, "j1", "running", "success", 1, "L2")]
    report = check(ledger, [_record("j1", "k1")], history, NOW, 200)
    report.assert_clean()
    assert report.counts["dup_exec"] == 1


@pytest.mark.parametrize(("planted", "expected"), [
    ("missing record", "lost"),
    ("never terminal", "lost"),
    ("running on an old lease", "stuck"),
    ("job nobody submitted", "unexpected"),
    ("refused submit stored", "unexpected"),
    ("worker ran an unknown job", "unexpected"),
    ("second terminal", "double_terminal"),
    ("completion by a superseded lease", "stale_accepted"),
    ("zombie call accepted", "stale_accepted"),
    ("transition from the wrong state", "bad_transition"),
    ("attempt went back", "bad_transition"),
    ("record disagrees with events", "bad_transition"),
    ("two jobs for one key", "dup_idem"),
])
def test_each_planted_fault_is_found(ledger: Ledger, planted: str, expected: str) -> None:
    records = [_record("j1", "k1")]
    history = _run("j1", "L1")
    if planted == "missing record":
        records = []
    elif planted == "never terminal":
        records, history = [_record("j1", "k1", "queued")], history[:1]
    elif planted == "running on an old lease":
        records, history = [_record("j1", "k1", "running", NOW - 5000)], history[:2]
    elif planted == "job nobody submitted":
        records.append(_record("j2", "stranger"))
    elif planted == "refused submit stored":
        ledger.record(Submit("k2", "fail"))
        records.append(_record("j2", "k2"))
        history += _run("j2", "L9", n=10)
    elif planted == "worker ran an unknown job":
        ledger.executions_file.write_text("start j9 0\n")
    elif planted == "second terminal":
        history.append(_t(9, "j1", "running", "failure", 0, "L1"))
    elif planted == "completion by a superseded lease":
        history = [*history[:2], _t(3, "j1", "running", "queued", 1, "L1"),
                   _t(4, "j1", "queued", "running", 1, "L2"),
                   _t(5, "j1", "running", "success", 1, "L1")]
    elif planted == "zombie call accepted":
        ledger.stale_calls.append(LeaseCall("L0", "complete", 200))
    elif planted == "transition from the wrong state":
        history.insert(1, _t(1, "j1", "running", "queued", 0, "L1"))
    elif planted == "attempt went back":
        history = [*history[:2], _t(3, "j1", "running", "queued", 1, "L1"),
                   _t(4, "j1", "queued", "running", 0, "L2"),
                   _t(5, "j1", "running", "success", 0, "L2")]
    elif planted == "record disagrees with events":
        records = [_record("j1", "k1", "failure")]
    elif planted == "two jobs for one key":
        records.append(_record("j2", "k1"))
        history += _run("j2", "L2", n=10)
    report = check(ledger, records, history, NOW, 200)
    assert report.counts[expected] >= 1, report.summary()
    assert set(report.violations()) <= set(MUST_BE_ZERO)
    with pytest.raises(AssertionError, match=expected):
        report.assert_clean()


def test_unknown_outcomes_are_recovered_or_phantom_and_lossy_keys_are_reported(
        ledger: Ledger) -> None:
    ledger.record(Submit("k2", "unknown"))
    ledger.record(Submit("k3", "unavailable"))
    ledger.record(Submit("k4", "ok", "j4"))
    ledger.lossy_keys.add("k4")
    history = _run("j1", "L1") + _run("j2", "L2", n=10)
    report = check(ledger, [_record("j1", "k1"), _record("j2", "k2")], history, NOW, 200)
    report.assert_clean()
    assert (report.counts["recovered"], report.counts["phantom"],
            report.counts["lost_by_fault"]) == (1, 1, 1)
