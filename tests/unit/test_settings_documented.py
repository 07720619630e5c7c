"""Every setting the code reads has a row in the README's configuration table."""

from __future__ import annotations

import re
from pathlib import Path

from leasehold.scheduler.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _table() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Configuration"):]
    return section[:section.index("\n## ", 1)]


def _documented() -> set[str]:
    return set(re.findall(r"^\| `(LEASEHOLD_[A-Z0-9_]+)`", _table(), re.MULTILINE))


def test_every_settings_field_has_a_row() -> None:
    names: set[str] = set()
    for info in Settings.model_fields.values():
        choices = getattr(info.validation_alias, "choices", [])
        names.update(c for c in choices if isinstance(c, str) and c.startswith("LEASEHOLD_"))
    assert names and names <= _documented(), sorted(names - _documented())


def test_every_environment_read_outside_settings_has_a_row() -> None:
    read: set[str] = set()
    for folder in ("api", "scheduler"):
        for path in (ROOT / folder).rglob("*.py"):
            read.update(re.findall(r"environ(?:\.get)?\(\s*\"(LEASEHOLD_[A-Z0-9_]+)\"",
                                   path.read_text()))
    job_env = {"LEASEHOLD_JOB_ID", "LEASEHOLD_ATTEMPT", "LEASEHOLD_OUTPUTS"}  # set for jobs
    assert read and (read - job_env) <= _documented(), sorted(read - job_env - _documented())
