"""deploy/ validates offline: compose spec, Kubernetes schemas, systemd units, Prometheus rules and
config, the dashboard's PromQL, redis.conf in a real redis-server, and the Dockerfile's shape.

Each check skips (with the reason) when its tool is missing; `.ci/run` installs them all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.ops.scrape import DEPLOY, ROOT
from tests.redis_server import free_port

K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"


def tool(name: str, hint: str) -> str:
    """The tool's path (the venv's bin first); skips the test when it is not installed."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        pytest.skip(f"{name} is not installed ({hint})")
    return found


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_compose_file_matches_the_compose_spec() -> None:
    checker = tool("check-jsonschema", "pip install '.[deploycheck]'")
    result = run(checker, "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert services["api"]["deploy"]["replicas"] == 2
    assert services["reaper"]["deploy"]["replicas"] == 1
    assert services["reaper"]["command"] == ["reaper"]
    assert "./redis.conf:/usr/local/etc/redis/redis.conf:ro" in services["redis"]["volumes"]
    assert {"redis", "api", "reaper", "prometheus"} <= set(services)


def _k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(K8S.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_kubernetes_manifests_match_the_api_schemas() -> None:
    validate = tool("kubernetes-validate", "pip install '.[deploycheck]'")
    files = [str(p) for p, doc in _k8s_documents() if doc["kind"] != "Kustomization"]
    result = run(validate, "--strict", "--quiet", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_manifests_probe_limit_and_keep_secrets_out() -> None:
    docs = _k8s_documents()
    assert not [p for p, doc in docs if doc["kind"] == "Secret"], "no Secret in the repository"
    deployments = {doc["metadata"]["name"]: doc for _, doc in docs if doc["kind"] == "Deployment"}
    assert set(deployments) == {"leasehold-api", "leasehold-reaper"}
    for doc in deployments.values():
        [container] = doc["spec"]["template"]["spec"]["containers"]
        assert {"name": "leasehold"} in [e.get("secretRef") for e in container["envFrom"]]
        assert "env" not in container  # settings come from the ConfigMap and the Secret only
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    [api] = deployments["leasehold-api"]["spec"]["template"]["spec"]["containers"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    config = next(doc for _, doc in docs if doc["kind"] == "ConfigMap")
    assert not {k for k in config["data"] if re.search("TOKEN|PASSWORD|REDIS_URL", k)}


def test_kustomization_renders_every_manifest() -> None:
    kubectl = tool("kubectl", "optional: kustomize is built into kubectl")
    result = run(kubectl, "kustomize", str(K8S))
    assert result.returncode == 0, result.stderr
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(result.stdout))
    assert kinds == ["ConfigMap", "Deployment", "Deployment", "PodDisruptionBudget", "Service"]


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", "apt-get install systemd")
    units = []
    for unit in sorted(SYSTEMD.glob("*.service")):
        text = unit.read_text()
        assert "ExecStart=/usr/local/bin/leasehold " in text
        # verify insists that ExecStart's binary exists; /bin/true stands in for it.
        name = unit.name.replace("@.service", "@1.service")
        (tmp_path / name).write_text(text.replace("/usr/local/bin/leasehold", "/bin/true"))
        units.append(str(tmp_path / name))
    assert [Path(u).name for u in units] == [
        "leasehold-agent@1.service", "leasehold-api.service", "leasehold-reaper.service"]
    result = run(analyze, "verify", "--man=no", *units)
    # Unknown keys and bad values are only warnings (exit 0): any output is a failure too.
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_alert_rules_check_and_fire_in_promtool_unit_tests() -> None:
    promtool = tool("promtool", "apt-get install prometheus")
    checked = run(promtool, "check", "rules", str(DEPLOY / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(promtool, "test", "rules", "alerts_test.yml", cwd=Path(__file__).parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_rule_test_that_fires_it() -> None:
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((Path(__file__).parent / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"]
             if case["exp_alerts"]}
    assert alerts == fired
    assert {"LeaseholdApiDown", "LeaseholdReaperStalled", "LeaseholdRedisUnavailable",
            "LeaseholdRedisMemoryHigh", "LeaseholdReadyJobsWithoutWorkers",
            "LeaseholdJobFailureRatioHigh", "LeaseholdServerErrors",
            "LeaseholdClaimLatencyHigh"} <= alerts


def test_prometheus_config_checks_as_shipped() -> None:
    promtool = tool("promtool", "apt-get install prometheus")
    # --syntax-only: the token file exists only inside the container; everything else is checked
    result = run(promtool, "check", "config", "--syntax-only", str(DEPLOY / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_hands_prometheus_the_metrics_token_where_it_reads_it() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    [job] = [j for j in prometheus["scrape_configs"] if j["job_name"] == "leasehold-api"]
    auth = job["authorization"]
    service = compose["services"]["prometheus"]
    mounted = {}
    for secret in service["secrets"]:
        name = secret if isinstance(secret, str) else secret["source"]
        target = name if isinstance(secret, str) else secret.get("target", name)
        mounted[target if target.startswith("/") else f"/run/secrets/{target}"] = name
    assert auth["credentials_file"] in mounted, (auth, mounted)
    source = compose["secrets"][mounted[auth["credentials_file"]]]
    assert source == {"environment": "LEASEHOLD_METRICS_TOKEN"}
    assert compose["x-leasehold"]["environment"]["LEASEHOLD_METRICS_TOKEN"].startswith(
        "${LEASEHOLD_METRICS_TOKEN")
    # the rule file named by prometheus.yml is mounted beside it
    volumes = service["volumes"]
    for rules in prometheus["rule_files"]:
        assert f"./{rules}:/etc/prometheus/{rules}:ro" in volumes


def test_every_process_of_the_deployment_refuses_an_embedded_redis() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert compose["x-leasehold"]["environment"]["LEASEHOLD_EMBEDDED"] == "off"
    assert re.search(r"^\s+LEASEHOLD_EMBEDDED=off", (DEPLOY / "Dockerfile").read_text(),
                     re.MULTILINE)
    config = next(doc for _, doc in _k8s_documents() if doc["kind"] == "ConfigMap")
    assert config["data"]["LEASEHOLD_EMBEDDED"] == "off"
    for unit in ("leasehold-api.service", "leasehold-reaper.service"):
        assert "LEASEHOLD_EMBEDDED=off" in (SYSTEMD / unit).read_text()


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = tool("promtool", "apt-get install prometheus")
    dashboard = json.loads((DEPLOY / "grafana" / "leasehold.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"]
             for target in panel.get("targets", [])]
    assert len(exprs) >= 20
    # Grafana's variables become what they stand for; each query becomes a recording rule.
    rules = [{"record": f"dashboard:query{i}",
              "expr": e.replace("$__rate_interval", "5m").replace("$queue", ".*")}
             for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def _check_compose_redis_password_flag() -> None:
    """Compose adds exactly the password, from the environment, to redis.conf."""
    redis_service = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["redis"]
    script = redis_service["command"][-1]
    assert "/usr/local/etc/redis/redis.conf" in script
    flags = script.split("redis.conf", 1)[1].split()
    assert flags == ["--requirepass", '"$$LEASEHOLD_REDIS_PASSWORD"']
    assert "LEASEHOLD_REDIS_PASSWORD" in redis_service["environment"]


def test_redis_conf_as_compose_runs_it_requires_a_password(tmp_path: Path) -> None:
    binary = tool("redis-server", "apt-get install redis-server")
    text = (DEPLOY / "redis.conf").read_text()
    assert not re.search(r"^\s*protected-mode\s+no", text, re.MULTILINE)
    assert not re.search(r"^\s*(requirepass|user)\s", text, re.MULTILINE)  # no password in git
    _check_compose_redis_password_flag()
    url = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["x-leasehold"]["environment"][
        "LEASEHOLD_REDIS_URL"]
    assert url.startswith("redis://:${LEASEHOLD_REDIS_PASSWORD")
    port = free_port()
    # The file as shipped plus compose's password flag; only the port, the data directory and
    # the memory cap differ.
    proc = subprocess.Popen([binary, str(DEPLOY / "redis.conf"), "--requirepass", "pw-from-env",
                             "--port", str(port), "--dir", str(tmp_path), "--maxmemory", "64mb"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    anonymous = redis.Redis(port=port, decode_responses=True, retry_on_error=[],
                            socket_connect_timeout=1)
    client = redis.Redis(port=port, password="pw-from-env", decode_responses=True,
                         retry_on_error=[], socket_connect_timeout=1)
    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.05)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        config = client.config_get("*")
        assert (config["appendonly"], config["appendfsync"]) == ("yes", "everysec")
        assert config["maxmemory-policy"] == "noeviction"
        assert config["protected-mode"] == "yes"
    finally:
        anonymous.close()
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def test_dockerfile_is_multi_stage_and_runs_as_a_non_root_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, re.MULTILINE)
    assert len(stages) >= 2
    runtime = text.split(f"AS {stages[-1]}", 1)[1]
    [user] = re.findall(r"^USER (\S+)$", runtime, re.MULTILINE)
    assert user.split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["leasehold"]' in runtime and "COPY --from=build" in runtime
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for needed in ("!pyproject.toml", "!scheduler/", "!api/", "!lua/"):
        assert needed in ignore
    for copied in re.findall(r"^COPY (?!--from)(\S+)", text, re.MULTILINE):
        assert (ROOT / copied).exists(), copied
