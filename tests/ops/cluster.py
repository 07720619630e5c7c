"""Starts a throwaway 3-master Redis Cluster on loopback free ports (never the shared 6379)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from tests.redis_server import RedisServer, free_port

BUS_OFFSET = 10_000  # a node's cluster bus listens on its port + 10000


def cluster_port() -> int:
    """A free port whose bus port (+10000) is a valid, free port as well."""
    for _ in range(200):
        port = free_port()
        if port + BUS_OFFSET > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class LocalCluster:
    """Three ``redis-server --cluster-enabled yes`` children joined by ``redis-cli --cluster``."""

    def __init__(self, root: Path, masters: int = 3) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not on PATH (apt-get install redis-tools)")
        self.nodes: list[RedisServer] = []
        try:
            for i in range(masters):
                port = cluster_port()
                node_dir = root / f"node{i}"
                self.nodes.append(RedisServer(
                    node_dir, "--cluster-enabled", "yes",
                    "--cluster-config-file", str(node_dir / "nodes.conf"),
                    "--cluster-node-timeout", "2000", port=port))
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", "0",
                            "--cluster-yes"], check=True, capture_output=True, timeout=30)
            self._wait_ok()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        """Any node's URL is enough: the client discovers the others."""
        return self.nodes[0].url

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + 20
        for node in self.nodes:
            client = redis.Redis(port=node.port, decode_responses=True)
            try:
                while client.cluster("INFO").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        raise TimeoutError("the cluster did not reach cluster_state:ok")
                    time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
