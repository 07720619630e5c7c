"""Workflow definitions (seed 003 Y1-Y12 and our extensions): parsing, flattening, refusals."""

from __future__ import annotations

import subprocess
import textwrap
from typing import Any

import orjson
import pytest

from leasehold.scheduler import errors
from leasehold.scheduler.models import ExponentialBackoff, FixedBackoff
from leasehold.scheduler.workflow_defs import WorkflowDef, load_document, parse
from leasehold.scheduler.workflows import SAMPLE

THREE_JOBS = """
name: CI pipeline
on: push
jobs:
  test:
    run: cargo test
  lint:
    run: cargo clippy
  build:
    needs: [test, lint]
    run: cargo build --release
"""


def yaml_def(text: str) -> WorkflowDef:
    return parse(load_document(textwrap.dedent(text), "yaml"))


def refused(text: str | bytes, fmt: str = "yaml") -> str:
    """The message of the InvalidArgument a definition is refused with."""
    if isinstance(text, str):
        text = textwrap.dedent(text)
    with pytest.raises(errors.InvalidArgument) as caught:
        parse(load_document(text, fmt))
    return caught.value.message


def run_sh(command: str) -> str:
    """Runs a flattened command the way a worker would; its stdout."""
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=10,
                          check=False)
    assert done.returncode == 0, (command, done.stderr)
    return done.stdout


# -- Y1-Y12 ---------------------------------------------------------------------------------------

def test_y1_three_jobs_with_name_trigger_and_needs_in_order() -> None:
    definition = yaml_def(THREE_JOBS)
    assert definition.name == "CI pipeline"
    assert definition.trigger == "push"  # YAML 1.1 reads `on` as true; the loader keeps the word
    assert definition.queue == "default"
    assert [job.id for job in definition.jobs] == ["test", "lint", "build"]
    assert definition.jobs[2].depends_on == ["test", "lint"]
    reversed_needs = yaml_def(THREE_JOBS.replace("[test, lint]", "[lint, test]"))
    assert reversed_needs.jobs[2].depends_on == ["lint", "test"]
    build = definition.jobs[2]
    assert (build.name, build.command) == ("build", "cargo build --release")


@pytest.mark.parametrize(("on", "trigger"), [
    ("on: [push, pull_request]", ["push", "pull_request"]),
    ("on:\n  push:\n    branches: [main]", {"push": {"branches": ["main"]}}),
])
def test_y1_trigger_may_be_a_list_or_a_map(on: str, trigger: Any) -> None:
    assert yaml_def(f"name: x\n{on}\njobs: {{}}\n").trigger == trigger


def test_y2_steps_flatten_into_one_bannered_command() -> None:
    definition = yaml_def("""
        name: steps
        on: push
        jobs:
          build:
            steps:
              - name: Checkout code
                run: echo checking-out
              - id: compile
                run: echo compiling
              - run: echo packaging
    """)
    command = definition.jobs[0].command
    for text in ("Checkout code", "echo checking-out", "echo compiling", "echo packaging"):
        assert text in command
    assert run_sh(command).splitlines() == [
        "=== Checkout code ===", "checking-out",
        "=== compile ===", "compiling",
        "=== step 3 ===", "packaging",
    ]


def test_y2_a_failing_step_stops_the_command() -> None:
    definition = yaml_def("""
        name: steps
        jobs:
          build:
            steps:
              - name: first
                run: "false"
              - name: second
                run: echo never
    """)
    done = subprocess.run(["sh", "-c", definition.jobs[0].command], capture_output=True,
                          text=True, timeout=10, check=False)
    assert done.returncode != 0 and "never" not in done.stdout


def test_y3_an_unknown_dependency_is_named() -> None:
    message = refused("""
        name: x
        on: push
        jobs:
          build:
            needs: [test, nowhere]
            run: make
          test:
            run: make test
    """)
    assert message == "Job 'build' depends on 'nowhere', which doesn't exist"


@pytest.mark.parametrize("body", ["name: Only a name", "steps: []"])
def test_y4_a_job_without_run_or_steps_is_refused(body: str) -> None:
    message = refused(f"name: x\non: push\njobs:\n  build:\n    {body}\n")
    assert message == "Job 'build' must have either 'run' or 'steps'"


def test_y5_an_empty_jobs_map_is_a_valid_definition() -> None:
    definition = yaml_def("name: nothing yet\non: push\njobs: {}\n")
    assert definition.jobs == [] and definition.name == "nothing yet"


def test_y6_a_scalar_needs_is_one_dependency() -> None:
    definition = yaml_def("""
        name: x
        on: push
        jobs:
          a:
            run: echo a
          b:
            needs: a
            run: echo b
    """)
    assert definition.jobs[1].depends_on == ["a"]


def test_y7_ids_with_dashes_and_underscores_and_punctuated_names_are_kept() -> None:
    definition = yaml_def("""
        name: "Deploy: prod (v2.0) & more!"
        on: push
        jobs:
          unit-tests_v2:
            name: "Unit tests (fast!) -- 100%"
            run: echo ok
          deploy_web-1:
            needs: unit-tests_v2
            run: echo deploy
    """)
    assert definition.name == "Deploy: prod (v2.0) & more!"
    assert [job.id for job in definition.jobs] == ["unit-tests_v2", "deploy_web-1"]
    assert definition.jobs[0].name == "Unit tests (fast!) -- 100%"
    assert definition.jobs[1].name == "deploy_web-1"  # defaults to the key
    assert definition.jobs[1].depends_on == ["unit-tests_v2"]


def test_y8_labels_and_retries() -> None:
    definition = yaml_def("""
        name: x
        on: push
        jobs:
          deploy:
            run: ./deploy.sh
            labels: [linux, deploy]
            retries: 3
          plain:
            run: echo
    """)
    deploy, plain = definition.jobs
    assert deploy.required_labels == ["linux", "deploy"]
    assert deploy.retry_policy.max_retries == 3 and deploy.retry_policy.backoff == "None"
    assert plain.required_labels == [] and plain.retry_policy.max_retries == 0


def test_y9_global_then_job_env_are_exported() -> None:
    definition = yaml_def("""
        name: x
        on: push
        env:
          GREETING: hello
          TARGET: world
          DEBUG: true
          LEVEL: 3
        jobs:
          show:
            env:
              TARGET: job
            run: echo "$GREETING $TARGET $DEBUG $LEVEL"
    """)
    command = definition.jobs[0].command
    assert command.index("export GREETING=") < command.index("export TARGET=job")
    assert run_sh(command) == "hello job true 3\n"  # the job's value wins; YAML true is `true`


def test_y9_step_env_applies_to_its_step_only() -> None:
    definition = yaml_def("""
        name: x
        jobs:
          a:
            env:
              WHO: job
            steps:
              - name: one
                env:
                  WHO: step
                run: echo "$WHO"
              - name: two
                run: echo "$WHO"
    """)
    assert run_sh(definition.jobs[0].command).splitlines() == [
        "=== one ===", "step", "=== two ===", "job"]


def test_y10_the_json_form_parses_like_the_yaml_form() -> None:
    document = {
        "name": "CI pipeline", "on": "push", "env": {"CI": "true"},
        "jobs": {
            "test": {"run": "cargo test", "labels": ["linux"], "retries": 2},
            "build": {"needs": ["test"], "steps": [{"name": "compile", "run": "echo hi"}]},
        },
    }
    definition = parse(load_document(orjson.dumps(document), "json"))
    assert (definition.name, definition.trigger) == ("CI pipeline", "push")
    test, build = definition.jobs
    assert (test.id, test.required_labels, test.retry_policy.max_retries) == ("test", ["linux"], 2)
    assert build.depends_on == ["test"] and "=== compile ===" in build.command
    assert run_sh(build.command) == "=== compile ===\nhi\n"


@pytest.mark.parametrize(("text", "fmt", "expected"), [
    ("name: x\njobs: [\n", "yaml", "malformed YAML"),
    ("name: x\njobs:\n\ta: 1\n", "yaml", "malformed YAML"),
    ("name: [unclosed\n", "yaml", "malformed YAML"),
    ('{"name": "x", "jobs": ', "json", "malformed JSON"),
    ("{bad}", "json", "malformed JSON"),
])
def test_y11_malformed_documents_are_refused(text: str, fmt: str, expected: str) -> None:
    assert refused(text, fmt).startswith(expected)


def test_y12_single_quotes_in_env_values_are_shell_escaped() -> None:
    definition = yaml_def("""
        name: x
        on: push
        env:
          MESSAGE: "it's a 'quoted' value; echo injected"
        jobs:
          say:
            env:
              OTHER: "$HOME `whoami` \\"dq\\" ''"
            steps:
              - name: "it's a step"
                run: printf '%s|%s\\n' "$MESSAGE" "$OTHER"
    """)
    out = run_sh(definition.jobs[0].command)
    assert out == ("=== it's a step ===\n"
                   "it's a 'quoted' value; echo injected|$HOME `whoami` \"dq\" ''\n")


# -- refusals --------------------------------------------------------------------------------------

def test_duplicate_job_ids_in_yaml_are_refused() -> None:
    message = refused("""
        name: x
        on: push
        jobs:
          build:
            run: echo one
          build:
            run: echo two
    """)
    assert "duplicate key 'build'" in message


def test_duplicate_job_ids_in_the_json_api_shape_are_refused() -> None:
    document = {"name": "x", "jobs": [{"id": "a", "command": "one"},
                                      {"id": "b", "command": "two"},
                                      {"id": "a", "command": "three"}]}
    assert refused(orjson.dumps(document), "json") == "duplicate job id 'a'"


def test_a_two_job_cycle_is_named() -> None:
    message = refused("""
        name: x
        jobs:
          a:
            needs: b
            run: echo a
          b:
            needs: a
            run: echo b
    """)
    assert message == "dependency cycle: a -> b -> a"


def test_a_longer_cycle_is_named_and_an_unrelated_job_is_not_in_it() -> None:
    message = refused("""
        name: x
        jobs:
          free:
            run: echo free
          a:
            needs: [free, d]
            run: echo a
          b:
            needs: a
            run: echo b
          c:
            needs: b
            run: echo c
          d:
            needs: c
            run: echo d
    """)
    assert message.startswith("dependency cycle: ")
    path = message.removeprefix("dependency cycle: ").split(" -> ")
    assert path[0] == path[-1] and sorted(path[:-1]) == ["a", "b", "c", "d"]
    assert "free" not in path


def test_a_self_dependency_is_a_cycle() -> None:
    assert refused("name: x\njobs:\n  a:\n    needs: a\n    run: x\n") == "dependency cycle: a -> a"


def test_a_cycle_in_the_json_api_shape_is_named() -> None:
    document = {"name": "x", "jobs": [{"id": "a", "command": "x", "depends_on": ["b"]},
                                      {"id": "b", "command": "x", "depends_on": ["a"]}]}
    assert refused(orjson.dumps(document), "json") == "dependency cycle: a -> b -> a"


def test_an_unknown_dependency_in_the_json_api_shape_is_named() -> None:
    document = {"name": "x", "jobs": [{"id": "a", "command": "x", "depends_on": ["zz"]}]}
    assert refused(orjson.dumps(document), "json") == "Job 'a' depends on 'zz', which doesn't exist"


def test_a_job_level_queue_other_than_the_workflows_is_refused() -> None:
    message = refused("name: x\nqueue: builds\njobs:\n  a:\n    queue: other\n    run: x\n")
    assert message == ("Job 'a' names queue 'other', but a workflow lives in one queue "
                       "('builds')")
    document = {"name": "x", "jobs": [{"id": "a", "command": "x", "queue": "other"}]}
    assert "Job 'a' names queue 'other'" in refused(orjson.dumps(document), "json")
    same = yaml_def("name: x\nqueue: builds\njobs:\n  a:\n    queue: builds\n    run: x\n")
    assert same.queue == "builds"


@pytest.mark.parametrize(("text", "where"), [
    ("on: push\njobs: {}\n", "at name: Field required"),
    ("name: x\njobs:\n  a:\n    run: x\n    bogus: 1\n", "at jobs.a.bogus"),
    ("name: x\njobs:\n  a:\n    run: x\n    retries: -1\n", "at jobs.a.retries"),
    ("name: x\njobs:\n  a:\n    run: x\n    labels: deploy\n", "at jobs.a.labels"),
    ("name: x\njobs:\n  a:\n    run: x\n    priority: 5000\n", "at jobs.a.priority"),
    ("name: x\njobs:\n", "at jobs"),
    ("name: x\njobs:\n  a b:\n    run: x\n", "at jobs.a b"),
    ("name: x\nenv:\n  A B: 1\njobs: {}\n", "at env.A B"),
    ("name: x\njobs:\n  a:\n    env:\n      'X;rm': 1\n    run: x\n", "at jobs.a.env.X;rm"),
])
def test_invalid_fields_are_refused_naming_where(text: str, where: str) -> None:
    message = refused(text)
    assert message.startswith("invalid workflow definition ") and where in message, message


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n", "42\n"])
def test_a_document_that_is_not_a_mapping_is_refused(text: str) -> None:
    assert refused(text) == "a workflow definition must be a mapping with name and jobs"


# -- our extensions and the JSON API shape ---------------------------------------------------------

def test_our_extensions_priority_retry_policy_lease_and_timeout() -> None:
    definition = yaml_def("""
        name: x
        on: push
        queue: builds
        jobs:
          a:
            run: echo a
            priority: 7
            retry_policy:
              max_retries: 4
              backoff:
                Exponential: {base_secs: 1, max_secs: 30}
            lease_ttl_secs: 12.5
            timeout_secs: 600
            metadata: {team: infra, nested: {n: [1, 2.5, true]}}
          b:
            run: echo b
            retries: 2
    """)
    a, b = definition.jobs
    assert definition.queue == "builds"
    assert (a.priority, a.lease_ttl_secs, a.timeout_secs) == (7, 12.5, 600)
    assert a.retry_policy.max_retries == 4
    assert isinstance(a.retry_policy.backoff, ExponentialBackoff)
    assert a.retry_policy.backoff.Exponential.max_secs == 30
    assert a.metadata == {"team": "infra", "nested": {"n": [1, 2.5, True]}}
    assert (b.priority, b.lease_ttl_secs, b.timeout_secs) == (100, None, None)
    assert b.retry_policy.max_retries == 2


def test_the_json_api_shape() -> None:
    document = {
        "name": "api", "trigger": {"manual": True}, "queue": "builds",
        "jobs": [
            {"id": "a", "command": "echo a", "required_labels": ["docker"], "max_retries": 2,
             "priority": 3, "metadata": {"k": "v"}},
            {"id": "b", "name": "Bee", "command": "echo b", "depends_on": ["a"],
             "retry_policy": {"max_retries": 1, "backoff": {"Fixed": {"delay_secs": 2}}},
             "max_retries": 5, "lease_ttl_secs": 9},
        ],
    }
    definition = parse(load_document(orjson.dumps(document), "json"))
    a, b = definition.jobs
    assert (definition.trigger, definition.queue) == ({"manual": True}, "builds")
    assert (a.name, a.required_labels, a.retry_policy.max_retries, a.priority) == (
        "a", ["docker"], 2, 3)
    assert (b.name, b.depends_on, b.lease_ttl_secs) == ("Bee", ["a"], 9)
    assert b.retry_policy.max_retries == 5  # max_retries overrides the policy's budget
    assert isinstance(b.retry_policy.backoff, FixedBackoff)


def test_seed_003_read_only_fields_are_accepted_and_ignored() -> None:
    document = {
        "id": "wf-from-an-old-client", "name": "echo", "trigger": "push",
        "jobs": [{"id": "a", "name": "A", "command": "echo a", "depends_on": [],
                  "status": "success", "duration_secs": 12.5, "started_at": 1710000000.0,
                  "output": "done", "ports": [{"x": 1}], "children": [], "collapsed": True,
                  "attempt": 3, "required_labels": [], "max_retries": 0, "metadata": {}}],
    }
    definition = parse(load_document(orjson.dumps(document), "json"))
    assert definition.id == ""  # the server assigns its own id
    (a,) = definition.jobs
    assert a.model_dump() == {
        "id": "a", "name": "A", "command": "echo a", "depends_on": [], "required_labels": [],
        "retry_policy": {"max_retries": 0, "backoff": "None", "jitter": 0.0}, "priority": 100,
        "lease_ttl_secs": None, "timeout_secs": None, "metadata": {}, "secrets": []}


def test_an_unknown_field_of_the_json_api_shape_is_refused() -> None:
    document = {"name": "x", "jobs": [{"id": "a", "command": "x", "colour": "red"}]}
    message = refused(orjson.dumps(document), "json")
    assert "at jobs.0.colour" in message


def test_the_sample_workflow_parses() -> None:
    definition = parse(load_document(SAMPLE.read_bytes(), "yaml"))
    assert len(definition.jobs) == 8 and definition.trigger == "push"
    deploys = {job.id: job for job in definition.jobs if "deploy" in job.required_labels}
    assert sorted(deploys) == ["deploy-db", "deploy-web"]
    assert deploys["deploy-web"].depends_on == ["build", "typecheck"]


@pytest.mark.parametrize("job", [
    {"id": "a", "command": "x", "timeout_secs": 1e308},
    {"id": "a", "command": "x", "required_labels": [f"l{n}" for n in range(65)]},
    {"id": "a", "command": "x" * 1_000_001},
])
def test_a_node_a_job_could_not_hold_is_refused_when_the_workflow_is_created(
        job: dict[str, object]) -> None:
    """Caught at creation (400), not when a run encodes the node's job."""
    with pytest.raises(errors.InvalidArgument, match="invalid workflow definition"):
        parse({"name": "w", "jobs": [job]})
