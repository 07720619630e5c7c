"""The README's Python client example runs as written against a running service."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import Service

README = Path(__file__).resolve().parents[2] / "README.md"


def _client_example() -> str:
    text = README.read_text()
    section = text[text.index("The same protocol from Python"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README lost its Python client example"
    return match.group(1)


def test_readme_python_client_example_runs_as_written(service: Service, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(_client_example())
    env = {**os.environ, "API": service.url, "ADMIN": service.admin_token}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    job_id, status = done.stdout.split()
    assert job_id and status == "success"
