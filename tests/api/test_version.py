"""What a client learns of the build: ``GET /version``, ``leasehold_build_info``, and nothing of
the framework or Python in the ``Server`` header."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from leasehold import __version__
from tests.api.harness import Api

BIN = Path(sys.executable).parent / "leasehold"


def _checkout_commit() -> str | None:
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, cwd=Path(__file__).parent, check=False)
    return head.stdout.strip() or None


async def test_version_is_public_and_names_the_release_and_commit(api: Api) -> None:
    reply = await api.get("/version", token=None)
    assert reply.status == 200
    assert reply.body["version"] == __version__
    assert reply.body.get("commit") == _checkout_commit()
    assert set(reply.body) <= {"version", "commit"}


async def test_the_server_header_names_no_framework_or_python(api: Api) -> None:
    for path, token in (("/healthz", None), ("/api/queues", "default"), ("/no/such/route", None),
                        ("/api/queues", None)):
        reply = await (api.get(path) if token == "default" else api.get(path, token=None))
        server = reply.headers.get("Server", "")
        assert server == "leasehold", (path, reply.status, server)
        assert "aiohttp" not in server and "Python" not in server


async def test_build_info_carries_the_version(api: Api) -> None:
    reply = await api.get("/metrics")
    assert reply.status == 200
    assert f'leasehold_build_info{{version="{__version__}"}} 1.0' in reply.text


def test_cli_version_matches() -> None:
    out = subprocess.run([str(BIN), "--version"], capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stdout.strip()) == (0, f"leasehold {__version__}")
