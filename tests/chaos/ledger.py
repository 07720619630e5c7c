"""The chaos ledger (research/reliability.md Part 3): what clients submitted, what workers ran,
and every state transition the server recorded; the checker sorts every job into one class.

Must be zero: ``lost`` (acknowledged, yet gone or never terminal), ``stuck`` (running on a lease
that expired well before the check), ``unexpected`` (a job no client asked for, or one whose submit
was definitely refused), ``double_terminal`` (two terminal transitions in one epoch),
``stale_accepted`` (a lease-bound transition or call accepted from a lease that was not the job's
current one), ``bad_transition`` (a transition whose ``from`` is not the job's state, an attempt
that went back, or a record that disagrees with its transitions), ``dup_idem`` (two jobs for
one idempotency key) and ``refused_completion`` (a worker that completed a job, retrying the call
after a lost reply, was finally told anything but 200). Reported only: ``ok``, ``recovered``
(unknown submit outcome, job ran),
``phantom`` (unknown outcome, no job), ``refused``, ``dup_exec`` (a job started more than once,
allowed by at-least-once) and ``lost_by_fault`` (acknowledged, then lost to a fault the test
declares lossy, such as a Redis restart without persistence).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

TERMINAL = frozenset({"success", "failure", "cancelled", "skipped"})
MUST_BE_ZERO = ("lost", "stuck", "unexpected", "double_terminal", "stale_accepted",
                "bad_transition", "dup_idem", "refused_completion")
REPORTED = ("ok", "recovered", "phantom", "refused", "dup_exec", "lost_by_fault")
OUTCOMES = ("ok", "fail", "unavailable", "unknown")


@dataclass(frozen=True)
class Submit:
    """One submit request: ``outcome`` is ok (2xx), fail (a definite 4xx), unavailable (503) or
    unknown (no reply: timeout, reset, 5xx)."""

    key: str
    outcome: str
    job_id: str | None = None
    server: str = ""
    status: int = 0
    t_start: float = 0.0
    t_end: float = 0.0


@dataclass(frozen=True)
class Execution:
    """One line a job's command appended: ``start`` or ``finish`` of an attempt."""

    event: str
    job_id: str
    attempt: int


@dataclass(frozen=True)
class Transition:
    """One entry of a queue's ``events`` stream."""

    entry_id: str
    job: str
    src: str
    dst: str
    attempt: int
    lease: str
    t_ms: int

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[str, str]) -> Transition:
        return cls(entry_id, fields["job"], fields["from"], fields["to"],
                   int(fields.get("attempt") or 0), fields.get("lease", ""), int(fields["t"]))

    @property
    def order(self) -> tuple[int, int]:
        ms, _, seq = self.entry_id.partition("-")
        return int(ms), int(seq or 0)


@dataclass(frozen=True)
class JobRecord:
    """What the checker needs of a stored job hash."""

    job_id: str
    key: str | None
    status: str
    attempt: int
    lease_id: str
    lease_expires_at_ms: int


@dataclass(frozen=True)
class LeaseCall:
    """A lease-bound call a test worker made after its lease was granted to someone else."""

    lease_id: str
    call: str
    status: int


@dataclass(frozen=True)
class Completion:
    """The last reply a worker got for completing a lease (after retrying lost replies)."""

    worker_id: str
    lease_id: str
    status: int
    tries: int = 1


@dataclass
class Ledger:
    """Everything the clients and workers of one run saw; ``executions`` is the file the jobs'
    commands append to."""

    executions_file: Path
    submits: list[Submit] = field(default_factory=list)
    stale_calls: list[LeaseCall] = field(default_factory=list)
    lossy_keys: set[str] = field(default_factory=set)
    completions: list[Completion] = field(default_factory=list)

    def record(self, submit: Submit) -> None:
        self.submits.append(submit)

    def acknowledged(self) -> dict[str, str]:
        """key -> job id of every submit the server acknowledged."""
        return {s.key: s.job_id for s in self.submits if s.outcome == "ok" and s.job_id}

    def executions(self) -> list[Execution]:
        if not self.executions_file.exists():
            return []
        found = []
        for line in self.executions_file.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] in ("start", "finish"):
                found.append(Execution(parts[0], parts[1], int(parts[2])))
        return found

    def mark_lossy_before(self, moment: float) -> None:
        """Acknowledged submits that ended before ``moment`` may be lost to the fault then."""
        self.lossy_keys.update(s.key for s in self.submits
                               if s.outcome == "ok" and s.t_end <= moment)


@dataclass
class Report:
    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, cls: str, what: str, n: int = 1) -> None:
        self.counts[cls] += n
        if len(self.examples[cls]) < 5:
            self.examples[cls].append(what)

    def violations(self) -> dict[str, int]:
        return {cls: self.counts[cls] for cls in MUST_BE_ZERO if self.counts[cls]}

    def summary(self) -> str:
        return " ".join(f"{cls}={self.counts[cls]}" for cls in (*REPORTED, *MUST_BE_ZERO))

    def assert_clean(self) -> None:
        bad = self.violations()
        details = {cls: self.examples[cls] for cls in bad}
        assert not bad, f"ledger check failed: {bad} {details}; {self.summary()}"


def check(ledger: Ledger, records: Iterable[JobRecord], transitions: Iterable[Transition],
          now_ms: int, reap_interval_ms: int, *, complete_history: bool = True) -> Report:
    """Classifies every job. ``complete_history`` is False when the events stream may have lost
    entries (a Redis restart without persistence): records are then not compared with it."""
    report = Report()
    by_id = {r.job_id: r for r in records}
    by_key: dict[str, list[JobRecord]] = defaultdict(list)
    submitted = {s.key for s in ledger.submits}
    for stored in by_id.values():
        if stored.key is None or stored.key not in submitted:
            report.add("unexpected", f"job {stored.job_id} that no client submitted")
        else:
            by_key[stored.key].append(stored)
    _check_submits(ledger, by_id, by_key, now_ms, reap_interval_ms, report)
    history = _replay(sorted(transitions, key=lambda t: t.order), report)
    known = set(by_id) | set(ledger.acknowledged().values())
    for job_id, (state, _) in history.items():
        if job_id not in known and complete_history:
            report.add("unexpected", f"transitions of unknown job {job_id}")
        record = by_id.get(job_id)
        if complete_history and record is not None and record.status != state:
            report.add("bad_transition", f"{job_id} is {record.status}, its events say {state}")
    for done in ledger.completions:
        if done.status != 200:
            report.add("refused_completion", f"{done.worker_id} completed {done.lease_id}, got "
                       f"{done.status} after {done.tries} tries")
    for call in ledger.stale_calls:
        if call.status < 300:
            report.add("stale_accepted", f"{call.call} with {call.lease_id} got {call.status}")
    _check_executions(ledger, known, report)
    return report


def _check_submits(ledger: Ledger, by_id: dict[str, JobRecord],
                   by_key: dict[str, list[JobRecord]], now_ms: int, reap_interval_ms: int,
                   report: Report) -> None:
    outcomes: dict[str, set[str]] = defaultdict(set)
    for submit in ledger.submits:
        outcomes[submit.key].add(submit.outcome)
    acked = ledger.acknowledged()
    for key, seen in outcomes.items():
        found = by_key.get(key, [])
        if len(found) > 1:
            report.add("dup_idem", f"{key}: {[r.job_id for r in found]}", len(found) - 1)
        if "ok" in seen:
            record = by_id.get(acked[key])
            if record is None:
                cls = "lost_by_fault" if key in ledger.lossy_keys else "lost"
                report.add(cls, f"{key} ({acked[key]}) acknowledged, record missing")
            else:
                _classify_live(record, "ok", key in ledger.lossy_keys, now_ms,
                               reap_interval_ms, report)
        elif seen & {"unknown", "unavailable"}:
            if found:
                _classify_live(found[0], "recovered", False, now_ms, reap_interval_ms, report)
            else:
                report.add("phantom", key)
        elif found:
            report.add("unexpected", f"{key} was refused but stored as {found[0].job_id}")
        else:
            report.add("refused", key)


def _classify_live(record: JobRecord, good: str, lossy: bool, now_ms: int,
                   reap_interval_ms: int, report: Report) -> None:
    if record.status in TERMINAL:
        report.add(good, record.job_id)
    elif (record.status == "running"
          and record.lease_expires_at_ms < now_ms - 2 * reap_interval_ms):
        report.add("stuck", f"{record.job_id} running on a lease expired at "
                   f"{record.lease_expires_at_ms} (now {now_ms})")
    else:
        report.add("lost_by_fault" if lossy else "lost",
                   f"{record.job_id} still {record.status}")


def _replay(transitions: list[Transition], report: Report) -> dict[str, tuple[str, int]]:
    """Walks each job's transitions through the state graph; returns job -> (state, epoch)."""
    state: dict[str, str] = {}
    lease: dict[str, str] = {}
    attempt: dict[str, int] = {}
    epoch: dict[str, int] = defaultdict(int)
    terminals: Counter[tuple[str, int]] = Counter()
    for t in transitions:
        current = state.get(t.job, "")
        if t.src != current:
            report.add("bad_transition", f"{t.job} {t.src}->{t.dst} while {current or 'new'}")
        if t.src == "running" and t.lease != lease.get(t.job):
            report.add("stale_accepted", f"{t.job} {t.src}->{t.dst} by lease {t.lease}, "
                       f"current {lease.get(t.job)}")
        if t.src in TERMINAL and t.dst == "queued":
            epoch[t.job] += 1  # an operator retry starts a new epoch with attempt 0
        elif t.attempt < attempt.get(t.job, 0):
            report.add("bad_transition", f"{t.job} attempt went back to {t.attempt}")
        attempt[t.job] = t.attempt
        if t.dst == "running":
            lease[t.job] = t.lease
        if t.dst in TERMINAL:
            terminals[(t.job, epoch[t.job])] += 1
            if terminals[(t.job, epoch[t.job])] > 1:
                report.add("double_terminal", f"{t.job} ended twice ({t.dst})")
        state[t.job] = t.dst
    return {job: (st, epoch[job]) for job, st in state.items()}


def _check_executions(ledger: Ledger, known: set[str], report: Report) -> None:
    starts: Counter[str] = Counter()
    for execution in ledger.executions():
        if execution.job_id not in known:
            report.add("unexpected", f"a worker ran unknown job {execution.job_id}")
        if execution.event == "start":
            starts[execution.job_id] += 1
    for job_id, n in starts.items():
        if n > 1:
            report.add("dup_exec", f"{job_id} started {n} times", n - 1)


def monotonic_to_wall(moment: float) -> float:
    """``time.monotonic()`` value -> wall clock (for comparing with Redis ms)."""
    return time.time() - (time.monotonic() - moment)
