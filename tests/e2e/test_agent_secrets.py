"""A real agent hands a job its secrets as environment variables and masks them in its logs."""

from __future__ import annotations

import pytest

from leasehold.api.fleet.client import LeaseholdClient
from leasehold.scheduler.models import JobStatus
from tests.e2e.conftest import AgentFactory, wait_terminal
from tests.e2e.test_agent import read_logs, spec

pytestmark = pytest.mark.timeout(90)

TOKEN = "ghp_e2eSecretValue0123456789"
PASSWORD = "pg-pass-4f1c9b"


async def test_an_echoed_secret_is_stored_as_stars(
        client: LeaseholdClient, agents: AgentFactory, queue: str) -> None:
    await client.request("PUT", "/api/secrets/deploy.token", {"value": TOKEN})
    await client.request("PUT", "/api/secrets/db", {"value": {"password": PASSWORD},
                                                    "queues": [queue]})
    await agents.start(queue)
    command = ('echo "token=$LEASEHOLD_SECRET_DEPLOY_TOKEN"; '
               'printf "db=%s" "$LEASEHOLD_SECRET_DB"; echo; '
               'printf "%s" "$LEASEHOLD_SECRET_DEPLOY_TOKEN" | cut -c1-8; '
               f'test ${{#LEASEHOLD_SECRET_DEPLOY_TOKEN}} = {len(TOKEN)} && echo same >&2; '
               'echo "$LEASEHOLD_SECRET_DB" >&2; exit 3')
    job = await client.submit(spec(queue, command, secrets=["deploy.token", "db"]))
    done = await wait_terminal(client, job.id)
    assert done.status == JobStatus.FAILURE
    text = "".join(c.data for c in await read_logs(client, job.id))
    assert "token=***" in text and "same" in text and "ghp_e2eS" in text
    assert '{"password":"***"}' in text or "db=***" in text
    for plain in (TOKEN, PASSWORD):
        assert plain not in text
        assert plain not in (done.error or "")
        assert plain not in done.model_dump_json()
