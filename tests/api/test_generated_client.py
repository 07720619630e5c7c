"""A client generated from a real server's ``/openapi.json`` (openapi-python-client) registers a
worker and takes a job through submit, claim, heartbeat, log push and complete: the document is
complete and exact enough to code against, with no hand-written HTTP."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import secrets
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.processes import children, leasehold
from tests.redis_server import free_port

BIN = Path(sys.executable).parent
GENERATOR = BIN / "openapi-python-client"
# Values a lossy round trip would change: past 2**53 and 2**63, a whole float, a float with no
# exact binary form, text beyond ASCII (and a JS line separator), nesting, null, key order.
PAYLOAD = {"zeta": 1, "alpha": [2**63 + 1, 1.0, 0.1], "text": "été ☃ 😀\u2028"}
OUTPUTS = {"exit_code": 0, "big": 9007199254740993, "ratio": 1.0, "tenth": 0.1,
           "nested": {"empty": [], "none": None, "é": "\u2028"}}


def _exact(value: Any) -> str:
    """JSON that tells 1 from 1.0 and keeps key order: equal means the same values, typed."""
    return json.dumps(value, ensure_ascii=False)


def _generate(document: bytes, into: Path) -> str:
    """Generates the client package into ``into``; the generator's output (warnings included)."""
    spec = into.parent / "openapi.json"
    spec.write_bytes(document)
    # the generator formats its output with ruff, and warns when ruff is not on PATH
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([str(GENERATOR), "generate", "--path", str(spec), "--output-path",
                           str(into), "--meta", "none"],
                          capture_output=True, text=True, timeout=120, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


@contextlib.contextmanager
def _imported(package: Path) -> Iterator[ModuleType]:
    """``package`` imported under its (unique) folder name; forgotten again at exit."""
    sys.path.insert(0, str(package.parent))
    try:
        yield importlib.import_module(package.name)
    finally:
        sys.path.remove(str(package.parent))
        for name in [n for n in sys.modules if n == package.name
                     or n.startswith(package.name + ".")]:
            del sys.modules[name]


def _call(package: ModuleType, operation: str, expected: type, *args: Any, **kwargs: Any
          ) -> Any:
    """The generated ``api.<operation>.sync(...)``, checked to parse as ``expected``."""
    module = importlib.import_module(f"{package.__name__}.api.{operation}")
    reply = module.sync(*args, **kwargs)
    assert isinstance(reply, expected), (operation, reply)
    return reply


def test_a_generated_client_runs_a_job_through_the_worker_protocol(
        redis_url: str, tmp_path: Path) -> None:
    port, admin_token = free_port(), "lha_" + secrets.token_urlsafe(24)
    env = {**os.environ, "LEASEHOLD_REDIS_URL": redis_url,
           "LEASEHOLD_NAMESPACE": f"gc{uuid.uuid4().hex[:10]}",
           "LEASEHOLD_ADMIN_TOKEN": admin_token, "LEASEHOLD_LOG_LEVEL": "warning"}
    url = f"http://127.0.0.1:{port}"
    package = tmp_path / f"leasehold_client_{uuid.uuid4().hex[:8]}"
    with children() as procs:
        serve = leasehold(["serve", "--port", str(port)], env, tmp_path, "serve")
        procs.append(serve)
        serve.wait_ready(url)
        with urllib.request.urlopen(url + "/openapi.json", timeout=10) as reply:
            document = reply.read()
        output = _generate(document, package)
        # the generator reads every route; the one thing it skips is a workflow posted as YAML
        # (it generates that route's JSON form)
        warnings = [line for line in output.splitlines() if line.startswith("WARNING")]
        assert warnings == ["WARNING parsing POST /api/workflows within workflows."], output
        assert "Unsupported content type application/yaml" in output
        assert "will not be generated" not in output and "Unable to" not in output, output
        with _imported(package) as client, contextlib.ExitStack() as clients:
            authed = importlib.import_module(f"{client.__name__}.client").AuthenticatedClient

            def session(token: str) -> Any:
                return clients.enter_context(authed(base_url=url, token=token,
                                                    raise_on_unexpected_status=True))

            _run_job(client, session, admin_token)


def _run_job(client: ModuleType, session: Callable[[str], Any], admin_token: str) -> None:
    models = importlib.import_module(f"{client.__name__}.models")
    admin = session(admin_token)
    registration = _call(client, "tokens.create_registration_token",
                         models.RegistrationTokenIssued, client=admin,
                         body=models.RegistrationTokenRequest(ttl_secs=60, uses=1))
    registered = _call(client, "workers.register", models.Registered,
                       client=session(registration.token),
                       body=models.Register(worker_id="generated-1", labels=["gen"]))
    worker = session(registered.worker_token)

    # one typed body model with every field (the "command or payload" rule is if/else)
    submitted = _call(client, "jobs.submit", models.SubmittedJob, client=admin,
                      body=models.SubmitBody(payload=PAYLOAD, queue="default", priority=5,
                                             required_labels=["gen"]))
    claim = _call(client, "worker_protocol.claim", models.Claim, client=worker,
                  body=models.ClaimRequest(worker_id=registered.worker_id, labels=["gen"]))
    assert claim.job.id == submitted.id
    assert _exact(claim.job.payload) == _exact(PAYLOAD)
    lease_id = claim.lease.lease_id

    beat = _call(client, "worker_protocol.heartbeat", models.HeartbeatReply, lease_id,
                 client=worker, body=models.LeaseHeartbeat(progress=50, message="half way"))
    assert beat.cancelled is False
    assert beat.lease.expires_at_ms >= claim.lease.expires_at_ms
    # each member of the push body's union: workflow-graph's chunks, Tendril's single chunk
    pushed = _call(client, "logs.push_logs", models.LogPushed, lease_id, client=worker,
                   body=models.ChunksPush(chunks=[models.ChunkIn(data="hello\n", sequence=0)]))
    assert (pushed.appended, pushed.dropped) == (1, 0)
    _call(client, "logs.push_logs", models.LogPushed, lease_id, client=worker,
          body=models.SingleChunkPush(log_chunk="careful\n",
                                      stream_type=models.SingleChunkPushStreamType.STDERR))
    _call(client, "worker_protocol.complete", models.Ok, lease_id, client=worker,
          body=models.Complete(outputs=models.CompleteOutputs.from_dict(OUTPUTS)))

    job = _call(client, "jobs.get_job", models.Job, submitted.id, client=admin)
    assert job.status == models.JobStatus.SUCCESS
    assert job.worker_id == registered.worker_id
    assert _exact(job.outputs.to_dict()) == _exact(OUTPUTS)
    assert _exact(job.payload) == _exact(PAYLOAD)
    logs = _call(client, "logs.read_logs", list, submitted.id, client=admin)
    assert [(chunk.data, chunk.stream) for chunk in logs] == [
        ("hello\n", "stdout"), ("careful\n", "stderr")]
