"""``redis+sentinel://`` URLs with real processes: a master, its replica and a Sentinel
(``redis-server --sentinel``). ``leasehold serve`` finds the master through the Sentinel and, after
a failover, the new one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.processes import children, leasehold
from tests.redis_server import RedisServer, free_port

MASTER = "leasehold-master"
ADMIN = "lha_" + "s" * 40


class Sentinel:
    """One ``redis-server --sentinel`` watching ``master_port`` (quorum 1, fast failover)."""

    def __init__(self, data_dir: Path, master_port: int) -> None:
        self.port = free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        conf = data_dir / "sentinel.conf"  # Sentinel rewrites its config: a file of its own
        conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {data_dir}\n"
                        f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 1\n"
                        f"sentinel down-after-milliseconds {MASTER} 1000\n"
                        f"sentinel failover-timeout {MASTER} 10000\n")
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen([binary, str(conf), "--sentinel"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, decode_responses=True)
        self.wait(lambda: self.master_port() == master_port, "the sentinel to see the master")

    def master_port(self) -> int | None:
        try:
            addr = self.client.sentinel_get_master_addr_by_name(MASTER)
        except redis.ConnectionError:
            return None
        return int(addr[1]) if isinstance(addr, (tuple, list)) else None

    @staticmethod
    def wait(done: object, what: str, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while not done():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def group(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, Sentinel]]:
    master = RedisServer(tmp_path / "master")
    replica = RedisServer(tmp_path / "replica", "--replicaof", "127.0.0.1", str(master.port))
    sentinel = None
    try:
        with redis.Redis(port=replica.port, decode_responses=True) as client:
            Sentinel.wait(lambda: client.info("replication")["master_link_status"] == "up",
                          "the replica to sync")
        sentinel = Sentinel(tmp_path / "sentinel", master.port)
        yield master, replica, sentinel
    finally:
        if sentinel is not None:
            sentinel.stop()
        replica.stop()
        master.stop()


def _submit(base: str) -> str | None:
    request = urllib.request.Request(
        base + "/api/jobs", data=json.dumps({"command": "true", "queue": "q"}).encode(),
        method="POST", headers={"Authorization": f"Bearer {ADMIN}",
                                "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            job_id: str = json.loads(resp.read())["id"]
            return job_id
    except urllib.error.HTTPError as exc:
        assert exc.code == 503, exc.read()  # Redis is failing over: the client retries
        return None


def _job_keys(port: int, namespace: str) -> int:
    with redis.Redis(port=port) as client:
        return sum(1 for _ in client.scan_iter(f"*{namespace}*"))


def test_serve_follows_the_sentinels_master_through_a_failover(
        group: tuple[RedisServer, RedisServer, Sentinel], tmp_path: Path) -> None:
    master, replica, sentinel = group
    namespace = "sentinel" + os.urandom(4).hex()
    env = {**os.environ, "LEASEHOLD_REDIS_URL": f"redis+sentinel://127.0.0.1:{free_port()},"
           f"127.0.0.1:{sentinel.port}/{MASTER}", "LEASEHOLD_ADMIN_TOKEN": ADMIN,
           "LEASEHOLD_NAMESPACE": namespace, "LEASEHOLD_LOG_FORMAT": "json"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with children() as procs:
        serve = leasehold(["serve", "--port", str(port)], env, tmp_path, "serve")
        procs.append(serve)
        serve.wait_ready(base)
        assert _submit(base) is not None
        assert _job_keys(master.port, namespace) > 0  # written to the master the sentinel named

        sentinel.client.sentinel_failover(MASTER)
        sentinel.wait(lambda: sentinel.master_port() == replica.port, "the failover")
        with (redis.Redis(port=replica.port, decode_responses=True) as promoted,
              redis.Redis(port=master.port, decode_responses=True) as demoted):
            sentinel.wait(lambda: promoted.info("replication")["role"] == "master",
                          "the replica's promotion")
            # until the old master is demoted it still takes writes (Redis replication is
            # asynchronous): those would be lost, which is Sentinel's limit, not ours
            sentinel.wait(lambda: demoted.info("replication")["role"] == "slave",
                          "the old master's demotion")
            before = promoted.dbsize()
            job = None
            deadline = time.monotonic() + 30
            while job is None:
                assert time.monotonic() < deadline, "no submit succeeded after the failover"
                job = _submit(base)
                time.sleep(0.2) if job is None else None
            assert promoted.dbsize() > before  # the new job went to the new master
