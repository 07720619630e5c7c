"""Start-up as an operator meets it, with real processes: a wrong setting is one line and exit 2,
a Redis that does not answer is waited for (one JSON line per try) and then one line and exit 1,
and the embedded Redis is private to one ``serve`` per data directory."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from tests.processes import BIN, children, json_log_records, leasehold
from tests.redis_server import RedisServer, free_port

ONE_ARG = {"agent": ["--server", "http://127.0.0.1:9", "--token", "lht_x"]}
BAD = [("LEASEHOLD_LOG_LEVEL", "verbose"), ("LEASEHOLD_LOG_FORMAT", "xml"),
       ("LEASEHOLD_REDIS_URL", "http://redis:6379"), ("LEASEHOLD_REAP_INTERVAL_SECS", "soon"),
       ("LEASEHOLD_PORT", "99999")]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEASEHOLD_")}
    return {**env, "LEASEHOLD_LOG_FORMAT": "json", **extra}


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize(("name", "value"), BAD)
@pytest.mark.parametrize("command", ["serve", "reaper", "agent"])
def test_a_wrong_setting_stops_each_command_with_one_line_naming_it(
        command: str, name: str, value: str, tmp_path: Path) -> None:
    env = _env(**{name: value, "LEASEHOLD_REDIS_URL": "redis://127.0.0.1:9/0"})
    env[name] = value
    result = _run([command, *ONE_ARG.get(command, [])], env, tmp_path)
    line = _one_line(result.stderr)
    assert result.returncode == 2, result
    assert line.startswith(f"leasehold {command}: bad setting {name}=") and value in line
    assert result.stdout == ""


def test_a_wrong_flag_is_one_line_too(tmp_path: Path) -> None:
    result = _run(["agent", "--server", "http://x:1", "--token", "t", "--slots", "0"], _env(),
                  tmp_path)
    assert result.returncode == 2
    assert "--slots: must be > 0" in _one_line(result.stderr)
    result = _run(["agent", "--server", "ftp://x", "--token", "t"], _env(), tmp_path)
    assert result.returncode == 2 and "--server" in _one_line(result.stderr)


@pytest.mark.parametrize("command", ["serve", "reaper"])
def test_unreachable_redis_is_retried_with_backoff_then_one_line_and_exit_1(
        command: str, tmp_path: Path) -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    env = _env(LEASEHOLD_REDIS_URL=url, LEASEHOLD_REDIS_WAIT_SECS="2")
    result = _run([command, "--port", str(free_port())] if command == "serve" else [command],
                  env, tmp_path)
    assert result.returncode == 1, result
    line = _one_line(result.stderr)
    assert "did not answer within 2s" in line and "LEASEHOLD_REDIS_WAIT_SECS" in line
    tries = [json.loads(raw) for raw in result.stdout.splitlines()]
    assert len(tries) >= 3 and {t["event"] for t in tries} == {"redis_unavailable"}
    assert [t["attempt"] for t in tries] == list(range(1, len(tries) + 1))
    delays = [t["retry_in_secs"] for t in tries[:3]]
    assert delays == sorted(delays) and delays[0] < delays[2]  # backoff grows
    assert "s3cret" not in result.stdout + result.stderr


def test_a_wrong_password_is_retried_and_reported_without_the_password(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    try:
        with redis.Redis(port=server.port) as client:
            client.config_set("requirepass", "right-one")
        env = _env(LEASEHOLD_REDIS_URL=f"redis://:wrong-one@127.0.0.1:{server.port}/0",
                   LEASEHOLD_REDIS_WAIT_SECS="1")
        result = _run(["reaper"], env, tmp_path)
    finally:
        server.stop()
    assert result.returncode == 1
    assert "AuthenticationError" in _one_line(result.stderr)
    assert "wrong-one" not in result.stdout + result.stderr


def test_redis_that_comes_up_during_the_wait_is_used(tmp_path: Path) -> None:
    redis_port, port = free_port(), free_port()
    env = _env(LEASEHOLD_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
               LEASEHOLD_REDIS_WAIT_SECS="30", LEASEHOLD_ADMIN_TOKEN="lha_" + "a" * 32)
    with children() as procs:
        serve = leasehold(["serve", "--port", str(port)], env, tmp_path, "serve")
        procs.append(serve)
        _wait_for_log(serve.out, "redis_unavailable")
        server = RedisServer(tmp_path / "redis", port=redis_port)
        try:
            serve.wait_ready(f"http://127.0.0.1:{port}")
        finally:
            server.stop()


def _wait_for_log(path: Path, event: str, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not (path.exists() and json_log_records(path, event)):
        assert time.monotonic() < deadline, f"no {event} line in {path}"
        time.sleep(0.05)


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token
                                     else {})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return resp.status, resp.read()


def _post(url: str, token: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        reply: dict[str, object] = json.loads(resp.read())
        return reply


def test_second_serve_on_one_data_dir_refuses_and_the_first_keeps_serving(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = _env()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with children() as procs:
        first = leasehold(["serve", "--port", str(port), "--data-dir", str(data)], env, tmp_path,
                          "first")
        procs.append(first)
        first.wait_ready(base)
        token = (data / "admin-token").read_text().strip()
        before = _post(base + "/api/jobs", token, {"command": "true", "queue": "q"})

        second = _run(["serve", "--port", str(free_port()), "--data-dir", str(data)], env,
                      tmp_path, timeout=30)
        assert second.returncode == 2
        line = _one_line(second.stderr)
        assert f"in use by leasehold serve pid {first.pid}" in line and "--data-dir" in line

        assert (data / "redis" / "redis.sock").exists()
        assert _get(base + "/readyz")[0] == 200
        after = _post(base + "/api/jobs", token, {"command": "true", "queue": "q"})
        status, body = _get(base + "/api/queues/q", token)
        assert status == 200 and json.loads(body)["ready"] == 2, (before, after)


def test_admin_token_is_kept_0600_shown_on_the_terminal_not_the_log_and_survives_restart(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = _env()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    tokens, job = [], None
    for run in ("one", "two"):
        with children() as procs:
            serve = leasehold(["serve", "--port", str(port), "--data-dir", str(data)], env,
                              tmp_path, run)
            procs.append(serve)
            serve.wait_ready(base)
            path = data / "admin-token"
            token = path.read_text().strip()
            tokens.append(token)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert token in serve.stderr() and f"http://127.0.0.1:{port}" in serve.stderr()
            assert token not in serve.out.read_text()
            assert all(isinstance(r, dict) for r in serve.logs())  # stdout: JSON lines only
            assert _get(base + "/api/queues", token)[0] == 200
            if job is None:
                job = _post(base + "/api/jobs", token, {"command": "true", "queue": "q"})["id"]
            else:  # AOF in the data dir: the job is still there
                assert _get(f"{base}/api/jobs/{job}", token)[0] == 200
    assert tokens[0] == tokens[1] and tokens[0].startswith("lha_")


def test_without_redis_server_serve_refuses_unless_ephemeral(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**_env(), "PATH": str(empty)}
    result = _run(["serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "d")], env,
                  tmp_path)
    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert "no redis-server on PATH" in line and "--ephemeral" in line
    assert not (tmp_path / "d" / "redis").exists()

    port = free_port()
    with children() as procs:
        serve = leasehold(["serve", "--ephemeral", "--port", str(port), "--data-dir",
                           str(tmp_path / "d")], env, tmp_path, "ephemeral")
        procs.append(serve)
        serve.wait_ready(f"http://127.0.0.1:{port}")
        assert "lost at exit" in serve.stderr()


def test_embedded_off_makes_a_missing_url_an_error(tmp_path: Path) -> None:
    result = _run(["serve", "--port", str(free_port())], _env(LEASEHOLD_EMBEDDED="off"),
                  tmp_path)
    assert result.returncode == 2
    assert "LEASEHOLD_REDIS_URL is not set" in _one_line(result.stderr)
    assert not (tmp_path / ".leasehold").exists()
