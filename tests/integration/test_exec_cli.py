"""End-to-end tests of ``bastion exec``: the real CLI, run as a subprocess, on a real Docker
engine.

Each test writes a small ``.drone.yml`` into ``tmp_path``, runs the ``bastion`` console script
(the one next to ``sys.executable``) in that directory and checks real effects: what the
steps printed after masking, what the containers saw, what Docker created and what it still
holds afterwards.

* **Finding a run's resources.** Everything a run creates is labelled
  ``io.bastion.owner-pid=<pid of the bastion process>``, so a test finds them by the pid of
  its subprocess: ``leftovers`` lists what is still there, ``created_by`` reads Docker's
  event log to list what was *ever* created (a refusal must create nothing, a run that
  leaves nothing behind must have created something in the first place).
* **Cleanup.** The ``cli`` fixture kills any bastion process a test left running and removes
  whatever carries the owner-pid label of the processes it started.
* **Invalid input** runs with ``DOCKER_HOST`` pointing at a socket that does not exist: the
  command must refuse with exit 2 before it ever talks to Docker (it would exit 3 otherwise).
* **No tracebacks.** ``Bastion.finish`` asserts that no Python traceback reached stdout or
  stderr, for every run in this file.

Slow cases (signals, timeouts, limits, the demo) are marked ``slow`` as well as ``docker``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import yaml
from tests.support.plans import BUSYBOX, PYTHON

from bastion.engine.plan import LABEL_MANAGED, LABEL_OWNER_HOST, LABEL_OWNER_PID, LABEL_RUN

BASTION = Path(sys.executable).with_name("bastion")
REPO_ROOT = Path(__file__).resolve().parents[2]
GREETER = REPO_ROOT / "examples" / "greeter"

MASK = "********"
# A Docker socket that does not exist: a command that touched Docker would exit 3, not 2.
NO_DOCKER = "unix:///nonexistent/bastion-tests/docker.sock"
# What `bastion exec` puts in io.bastion.owner-host (os.uname().nodename).
OWNER_HOST = os.uname().nodename
# Networks and volumes of `bastion exec` runs: bastion-<10 hex digits>[-...].
CLI_RESOURCE = re.compile(r"^bastion-(?P<run>[0-9a-f]{10})(?:-|$)")
TRUST_HINT = "bastion exec --trusted for a local run"

# Generous upper bounds for "it stops soon": never a timing assertion, only against hangs.
RUN_TIMEOUT = 120.0
STOPS_WITHIN = 20.0


# -- running the CLI -------------------------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    """How one ``bastion`` process ended, and what it printed."""

    args: tuple[str, ...]
    pid: int
    returncode: int
    stdout: str
    stderr: str
    started: float  # time.time() just before the process started
    ended: float  # time.time() once it had exited

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def lines_of(self, step: str) -> list[str]:
        """Every output line of one step, without its ``name │`` prefix (traces included)."""
        prefix = re.compile(rf"^{re.escape(step)} *│ ?(.*)$")
        return [m.group(1) for line in self.stdout.splitlines() if (m := prefix.match(line))]

    def printed(self, step: str) -> list[str]:
        """What one step's commands printed: its lines without the ``+ command`` traces."""
        return [line for line in self.lines_of(step) if not line.startswith("+ ")]

    def summary_row(self, step: str) -> str:
        """The row of ``step`` in the summary table at the end of the run."""
        rows = [
            line for line in self.stdout.splitlines() if re.match(rf"^│ {re.escape(step)} +│", line)
        ]
        assert rows, f"no summary row for {step!r}\n{self}"
        return rows[-1]

    def __str__(self) -> str:
        return (
            f"$ bastion {' '.join(self.args)}  (pid {self.pid}, exit {self.returncode})\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


@dataclass
class Running:
    """A ``bastion`` process that has not been waited for yet."""

    process: subprocess.Popen[str]
    args: tuple[str, ...]
    started: float

    @property
    def pid(self) -> int:
        return self.process.pid


def cli_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without settings that would change Bastion's behaviour,
    plus a wide, colourless console so that Rich never wraps a line (a secret split by a
    wrap would hide a leak from these tests)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BASTION_", "DRONE_")) and key not in ("FORCE_COLOR", "NO_COLOR")
    }
    env.update(
        COLUMNS="1000",
        NO_COLOR="1",
        TERM="dumb",
        PYTHONIOENCODING="utf-8",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


class Bastion:
    """Starts the ``bastion`` console script and remembers every process it started."""

    def __init__(self) -> None:
        self.running: list[Running] = []

    @property
    def pids(self) -> list[int]:
        return [r.pid for r in self.running]

    def start(self, *args: str, cwd: Path, env: Mapping[str, str] | None = None) -> Running:
        started = time.time()
        process = subprocess.Popen(
            [str(BASTION), *args],
            cwd=cwd,
            env=cli_environment(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        running = Running(process, args, started)
        self.running.append(running)
        return running

    def finish(self, running: Running, timeout: float = RUN_TIMEOUT) -> CliResult:
        """Wait for the process; fail the test if it hangs or printed a traceback."""
        try:
            stdout, stderr = running.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            running.process.kill()
            stdout, stderr = running.process.communicate()
            pytest.fail(
                f"bastion {' '.join(running.args)} did not end within {timeout:g} s\n"
                f"--- stdout\n{stdout}--- stderr\n{stderr}"
            )
        result = CliResult(
            args=running.args,
            pid=running.pid,
            returncode=running.process.returncode,
            stdout=stdout,
            stderr=stderr,
            started=running.started,
            ended=time.time(),
        )
        assert "Traceback" not in result.output, f"a Python traceback was printed\n{result}"
        return result

    def run(
        self,
        *args: str,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        timeout: float = RUN_TIMEOUT,
    ) -> CliResult:
        return self.finish(self.start(*args, cwd=cwd, env=env), timeout)

    def close(self) -> None:
        """Kill every process still running and reap it (its pid then reads as dead)."""
        for running in self.running:
            process = running.process
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()


# -- Docker: what a run created and what it left ---------------------------------------------


def owned_by(pid: int) -> dict[str, Any]:
    """A label filter for what the bastion process ``pid`` created on this host."""
    return {
        "label": [
            f"{LABEL_MANAGED}=true",
            f"{LABEL_OWNER_PID}={pid}",
            f"{LABEL_OWNER_HOST}={OWNER_HOST}",
        ]
    }


def leftovers(client: docker.DockerClient, pid: int, runs: Sequence[str] = ()) -> list[str]:
    """Every container, network and volume of the process ``pid`` still present, as
    "kind name"; also volumes named after its runs, in case Docker created one unlabelled."""
    api = client.api
    found = [
        f"container {c['Names'][0].lstrip('/')}"
        for c in api.containers(all=True, filters=owned_by(pid))
    ]
    found += [f"network {n['Name']}" for n in api.networks(filters=owned_by(pid))]
    volumes = {v["Name"] for v in api.volumes(filters=owned_by(pid)).get("Volumes") or []}
    for run in runs:
        named = api.volumes(filters={"name": f"bastion-{run}"}).get("Volumes") or []
        volumes.update(v["Name"] for v in named if v["Name"].startswith(f"bastion-{run}"))
    found += [f"volume {v}" for v in sorted(volumes)]
    return found


def sweep(client: docker.DockerClient, pid: int) -> None:
    """Remove whatever the bastion process ``pid`` left behind; never raises for what is gone."""
    api = client.api
    for c in api.containers(all=True, filters=owned_by(pid)):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            api.remove_container(c["Id"], force=True, v=True)
    for n in api.networks(filters=owned_by(pid)):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            api.remove_network(n["Id"])
    for v in api.volumes(filters=owned_by(pid)).get("Volumes") or []:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            api.remove_volume(v["Name"], force=True)


@dataclass
class Created:
    """What Docker's event log says a bastion process created."""

    runs: set[str] = field(default_factory=set)
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    @property
    def anything(self) -> bool:
        return bool(self.containers or self.networks or self.volumes)

    def __str__(self) -> str:
        return (
            f"runs {sorted(self.runs)}, containers {self.containers}, "
            f"networks {self.networks}, volumes {self.volumes}"
        )


def _labels_of(client: docker.DockerClient, kind: str, name: str) -> dict[str, str] | None:
    try:
        if kind == "network":
            attrs = client.api.inspect_network(name)
        else:
            attrs = client.api.inspect_volume(name)
    except docker.errors.NotFound:
        return None
    return dict(attrs.get("Labels") or {})


def created_by(client: docker.DockerClient, result: CliResult) -> Created:
    """Every container, network and volume the process of ``result`` created while it ran.

    Container events carry the labels, so the owner pid decides. Network and volume events
    carry only a name: those named after one of the process's runs are its own; one named
    like a ``bastion exec`` resource of no known run counts as its own too, unless it still
    exists and its labels say otherwise (another session may share this engine).
    """
    events = client.api.events(
        since=f"{result.started:.9f}",
        until=f"{max(result.ended, time.time()):.9f}",
        filters={"event": "create"},
        decode=True,
    )
    created = Created()
    other_runs: set[str] = set()
    named: dict[tuple[str, str], None] = {}  # a volume has a create event for each mount
    try:
        for event in events:
            _note_event(event, result.pid, created, other_runs, named)
    finally:
        events.close()
    for kind, name in named:
        match = CLI_RESOURCE.match(name)
        if match is None or match["run"] in other_runs:
            continue
        if match["run"] not in created.runs:
            labels = _labels_of(client, kind, name)
            if labels is not None and labels.get(LABEL_OWNER_PID) != str(result.pid):
                continue
        (created.networks if kind == "network" else created.volumes).append(name)
    return created


def _note_event(
    event: dict[str, Any],
    pid: int,
    created: Created,
    other_runs: set[str],
    named: dict[tuple[str, str], None],
) -> None:
    actor = event.get("Actor") or {}
    attributes: dict[str, str] = actor.get("Attributes") or {}
    kind = event.get("Type")
    if kind == "container":
        run = attributes.get(LABEL_RUN, "")
        if (
            attributes.get(LABEL_OWNER_PID) == str(pid)
            and attributes.get(LABEL_OWNER_HOST) == OWNER_HOST
        ):
            created.containers.append(attributes.get("name", actor.get("ID", "?")))
            created.runs.add(run)
        elif run:
            other_runs.add(run)
    elif kind == "network":
        named[("network", attributes.get("name", ""))] = None
    elif kind == "volume":
        named[("volume", actor.get("ID", ""))] = None


def assert_cleaned_up(client: docker.DockerClient, result: CliResult) -> Created:
    """The run created a network, a volume and containers, and none of them is left."""
    created = created_by(client, result)
    assert created.containers, f"the run created no container: {created}\n{result}"
    assert created.networks, f"the run created no network: {created}\n{result}"
    assert created.volumes, f"the run created no volume: {created}\n{result}"
    assert leftovers(client, result.pid, sorted(created.runs)) == [], str(result)
    return created


def assert_created_nothing(client: docker.DockerClient, result: CliResult) -> None:
    created = created_by(client, result)
    assert not created.anything, f"bastion created Docker resources: {created}\n{result}"
    assert leftovers(client, result.pid) == []


def wait_for_running_step(
    client: docker.DockerClient, running: Running, timeout: float = 60.0
) -> str:
    """The name of a running step container of this bastion process, once there is one."""
    deadline = time.monotonic() + timeout
    filters = owned_by(running.pid)
    filters["status"] = ["running"]
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            out, err = running.process.communicate()
            pytest.fail(f"bastion exited early ({running.process.returncode})\n{out}\n{err}")
        containers = client.api.containers(filters=filters)
        if containers:
            return str(containers[0]["Names"][0].lstrip("/"))
        time.sleep(0.1)
    pytest.fail(f"no step container of bastion (pid {running.pid}) ran within {timeout:g} s")


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def bastion() -> Iterator[Bastion]:
    """Runs the CLI without Docker; kills what is still running at teardown."""
    runner = Bastion()
    yield runner
    runner.close()


@pytest.fixture
def cli(bastion: Bastion, docker_client: docker.DockerClient) -> Iterator[Bastion]:
    """Runs the CLI on the real engine; at teardown removes whatever its processes left."""
    yield bastion
    bastion.close()
    for pid in bastion.pids:
        sweep(docker_client, pid)


# -- pipeline files --------------------------------------------------------------------------


def step(name: str, *commands: str, image: str = BUSYBOX, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": image, "commands": list(commands), **fields}


def pipeline(name: str = "default", **fields: Any) -> dict[str, Any]:
    return {"kind": "pipeline", "type": "docker", "name": name, **fields}


def write_pipelines(
    directory: Path, *pipelines: Mapping[str, Any], name: str = ".drone.yml"
) -> Path:
    """Write the pipelines as YAML documents (PyYAML does the quoting of the commands)."""
    path = directory / name
    text = yaml.safe_dump_all([dict(p) for p in pipelines], sort_keys=False, width=10_000)
    path.write_text(text, encoding="utf-8")
    return path


def ran(result: CliResult, marker: str = "ran:") -> set[str]:
    """Names printed as ``ran:<name>`` by the steps (``echo "ran:$DRONE_STEP_NAME"``)."""
    names: set[str] = set()
    for line in result.stdout.splitlines():
        match = re.search(rf"│ {re.escape(marker)}(\S+)$", line)
        if match:
            names.add(match.group(1))
    return names


RAN = 'echo "ran:$DRONE_STEP_NAME"'


def py(code: str) -> str:
    """A command running Python code in a step (the python image)."""
    return f"python3 -c {shlex.quote(code)}"


# The time in a step, to the microsecond: containers share the host's clock.
NOW = py("import time; print(repr(time.time()))")


# == 1. secrets: masked in every form, only where referenced, long enough ====================

TOKEN = 'Zq9"xK\\vB/7+w=tL mP-4&Yr'  # quote, backslash, slash, plus, equals, space, ampersand
TEST_KEY = (
    "-----BEGIN BASTION TEST KEY-----\n"
    "Qm9ndXNLZXlMaW5lT25lQUFBQkJCQ0ND\n"
    "RGlmZmVyZW50U2Vjb25kTGluZURERUVF\n"
    "-----END BASTION TEST KEY-----"
)


def secret_forms(value: str) -> dict[str, str]:
    """The forms the masking steps print, computed here independently of Bastion."""
    raw = value.encode()
    forms = {
        "plain": value,
        "base64": base64.b64encode(raw).decode(),
        # base64("user:" + value): its first 7 characters encode "user:" (and 4 bits of the
        # value); everything after them is the value's.
        "basic auth base64": base64.b64encode(b"user:" + raw).decode()[7:],
        "url": urllib.parse.quote(value),
        "url, safe=''": urllib.parse.quote(value, safe=""),
        "url, plus": urllib.parse.quote_plus(value),
        "json": json.dumps(value)[1:-1],
        "hex": raw.hex(),
    }
    for number, line in enumerate(value.splitlines(), start=1):
        forms[f"line {number}"] = line
    return forms


ENCODERS = 'import json, os; from urllib.parse import quote, quote_plus; t = os.environ["T"]'


@pytest.fixture(scope="module")
def masked_run(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CliResult]:
    """One run whose steps print two secrets in every form they can, and a step that gets
    no secret and lists its environment."""
    directory = tmp_path_factory.mktemp("masking")
    secrets = {"TOKEN": {"from_secret": "token"}, "KEY": {"from_secret": "test_key"}}
    write_pipelines(
        directory,
        pipeline(
            steps=[
                step(
                    "shell",
                    'echo "plain=$TOKEN"',
                    "printf 'b64='; echo -n \"$TOKEN\" | base64",
                    "printf 'basic='; echo -n \"user:$TOKEN\" | base64",
                    # The value split across two writes, 0.3 s apart.
                    "printf 'split=%s' \"${TOKEN:0:9}\"; sleep 0.3; printf '%s\\n' \"${TOKEN:9}\"",
                    'echo "whole:"; printf \'%s\\n\' "$KEY"',
                    'printf \'%s\\n\' "$KEY" | while IFS= read -r l; do echo "line=$l"; done',
                    "printf 'keyb64='; printf '%s' \"$KEY\" | base64 -w 0; echo",
                    "printf 'tail=%s' \"$TOKEN\"",  # the last output, without a line break
                    environment=secrets,
                ),
                # Its own step: stdout and stderr are masked as one stream, so a line on
                # stderr in the middle of the split write above would defeat the masking
                # (see test_a_secret_split_across_writes_is_masked_when_stderr_writes_between).
                step("stderr", 'echo "err=$TOKEN" >&2', environment=secrets),
                step(
                    "encode",
                    *(
                        py(f"{ENCODERS}; print({expression})")
                        for expression in (
                            '"url=" + quote(t)',
                            '"url0=" + quote(t, safe="")',
                            '"urlplus=" + quote_plus(t)',
                            '"json=" + json.dumps(t)',
                            'json.dumps({"token": t})',
                            '"hex=" + t.encode().hex()',
                        )
                    ),
                    image=PYTHON,
                    environment={"T": {"from_secret": "token"}},
                ),
                step(
                    "other",
                    "env | sort",
                    py(
                        "import hashlib, os\n"
                        "for value in os.environ.values():\n"
                        "    print('sha', hashlib.sha256(value.encode()).hexdigest())"
                    ),
                    image=PYTHON,
                ),
            ]
        ),
    )
    secret_file = directory / "ci.secrets"
    secret_file.write_text(f'test_key="{TEST_KEY}"\n', encoding="utf-8")
    runner = Bastion()
    try:
        yield runner.run(
            "exec", "--secret", f"token={TOKEN}", "--secret-file", str(secret_file), cwd=directory
        )
    finally:
        runner.close()
        for pid in runner.pids:
            sweep(docker_client, pid)


@pytest.mark.docker
@pytest.mark.timeout(180)
def test_no_form_of_a_secret_reaches_the_output(masked_run: CliResult) -> None:
    result = masked_run
    assert result.returncode == 0, str(result)
    for secret in (TOKEN, TEST_KEY):
        for what, form in secret_forms(secret).items():
            assert form not in result.output, f"the {what} form of a secret leaked\n{result}"
    for form in (TOKEN[:12], TOKEN[9:]):  # neither half of the value split across writes
        assert form not in result.output, str(result)


@pytest.mark.docker
@pytest.mark.timeout(180)
def test_every_printed_form_of_a_secret_shows_as_the_mask(masked_run: CliResult) -> None:
    result = masked_run
    shell = result.printed("shell")
    for line in (
        f"plain={MASK}",
        f"b64={MASK}",
        f"split={MASK}",
        f"keyb64={MASK}",
        f"tail={MASK}",
    ):
        assert line in shell, f"{line!r} not printed by the step\n{result}"
    assert result.printed("stderr") == [f"err={MASK}"], str(result)  # stderr is masked too
    basic = [line for line in shell if line.startswith("basic=")]
    assert len(basic) == 1, str(result)
    assert MASK in basic[0], str(result)
    assert basic[0] != "basic=" + base64.b64encode(f"user:{TOKEN}".encode()).decode()

    # The multi-line secret: printed whole (each of its lines masked) and line by line.
    whole = shell.index("whole:")
    assert shell[whole + 1 : whole + 5] == [MASK] * 4, str(result)
    assert [line for line in shell if line.startswith("line=")] == [f"line={MASK}"] * 4, str(result)

    encode = result.printed("encode")
    for line in (f"url={MASK}", f"url0={MASK}", f"urlplus={MASK}", f'json="{MASK}"', f"hex={MASK}"):
        assert line in encode, f"{line!r} not printed by the step\n{result}"
    assert f'{{"token": "{MASK}"}}' in encode, str(result)


@pytest.mark.docker
@pytest.mark.timeout(180)
def test_a_step_that_does_not_reference_a_secret_cannot_see_it(masked_run: CliResult) -> None:
    result = masked_run
    other = result.printed("other")
    assert "DRONE_STEP_NAME=other" in other, str(result)  # it did list its environment
    assert not [line for line in other if line.startswith(("TOKEN=", "KEY="))], str(result)
    assert not [line for line in other if MASK in line], str(result)
    # Masking would hide a value that was there: hashes of every value prove it was not.
    hashes = {line.split()[1] for line in other if line.startswith("sha ")}
    assert len(hashes) > 10, str(result)
    for secret in (TOKEN, TEST_KEY):
        assert hashlib.sha256(secret.encode()).hexdigest() not in hashes, str(result)


@pytest.mark.docker
def test_a_secret_split_across_writes_is_masked_when_stderr_writes_between(
    cli: Bastion, tmp_path: Path
) -> None:
    write_pipelines(
        tmp_path,
        pipeline(
            steps=[
                step(
                    "shell",
                    "printf 'split=%s' \"${TOKEN:0:9}\"; sleep 0.3;"
                    " echo 'a warning' >&2; sleep 0.3; printf '%s\\n' \"${TOKEN:9}\"",
                    environment={"TOKEN": {"from_secret": "token"}},
                )
            ]
        ),
    )

    result = cli.run("exec", "--secret", f"token={TOKEN}", cwd=tmp_path)

    assert result.returncode == 0, str(result)
    assert TOKEN[:9] not in result.output, str(result)
    assert TOKEN[9:] not in result.output, str(result)
    assert f"split={MASK}" in result.printed("shell"), str(result)


@pytest.mark.parametrize("how", ["option", "file"])
def test_a_secret_shorter_than_four_characters_is_refused_by_name(
    bastion: Bastion, tmp_path: Path, how: str
) -> None:
    write_pipelines(
        tmp_path,
        pipeline(steps=[step("use", 'echo "$T"', environment={"T": {"from_secret": "tiny"}})]),
    )
    if how == "option":
        args = ["--secret", "tiny=q7Z"]
    else:
        (tmp_path / "s.env").write_text("tiny=q7Z\n", encoding="utf-8")
        args = ["--secret-file", "s.env"]

    result = bastion.run("exec", *args, cwd=tmp_path, env={"DOCKER_HOST": NO_DOCKER})

    assert result.returncode == 2, str(result)
    assert "'tiny'" in result.stderr, str(result)
    assert "3 characters" in result.stderr, str(result)
    assert "q7Z" not in result.output, str(result)


# == 2. refusals before anything starts ======================================================

REFUSALS = [
    pytest.param(
        {"steps": [step("build", "true", privileged=True)]},
        [],
        ["step 'build'", "steps[0].privileged", "privileged: true", TRUST_HINT],
        id="privileged",
    ),
    pytest.param(
        {
            "volumes": [{"name": "cache", "host": {"path": "/tmp"}}],
            "steps": [step("build", "true", volumes=[{"name": "cache", "path": "/cache"}])],
        },
        [],
        ["step 'build'", "steps[0].volumes[0]", "host volume 'cache' (/tmp)", TRUST_HINT],
        id="host-volume",
    ),
    pytest.param(
        {
            "volumes": [{"name": "sock", "host": {"path": "/var/run/docker.sock"}}],
            "steps": [
                step("build", "true", volumes=[{"name": "sock", "path": "/var/run/docker.sock"}])
            ],
        },
        ["--trusted"],
        ["volumes[0].host.path", "volume 'sock'", "/var/run/docker.sock", "trusted or not"],
        id="docker-socket-even-trusted",
    ),
    pytest.param(
        {"steps": [step("build", "true", devices=[{"name": "/dev/null", "path": "/dev/xnull"}])]},
        [],
        ["step 'build'", "steps[0].devices", "devices", TRUST_HINT],
        id="devices",
    ),
    pytest.param(
        {"steps": [step("build", "true", network_mode="host")]},
        [],
        ["step 'build'", "steps[0].network_mode", "network_mode: host", TRUST_HINT],
        id="host-network",
    ),
]


@pytest.mark.docker
@pytest.mark.parametrize(("fields", "options", "expected"), REFUSALS)
def test_a_forbidden_pipeline_is_refused_before_anything_is_created(
    cli: Bastion,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    fields: dict[str, Any],
    options: list[str],
    expected: list[str],
) -> None:
    write_pipelines(tmp_path, pipeline(**fields))

    result = cli.run("exec", *options, cwd=tmp_path)

    assert result.returncode == 2, str(result)
    assert re.search(r"\.drone\.yml:\d+:\d+: error \[policy\]", result.stderr), str(result)
    for words in expected:
        assert words in result.stderr, f"{words!r} missing from the message\n{result}"
    if "--trusted" in options:
        assert "to allow it" not in result.stderr, result  # nothing can allow it
    assert "nothing was run" in result.stderr, str(result)
    assert_created_nothing(docker_client, result)

    # And without a reachable engine the answer is the same: Docker was never needed.
    offline = cli.run("exec", *options, cwd=tmp_path, env={"DOCKER_HOST": NO_DOCKER})
    assert offline.returncode == 2, str(offline)
    assert offline.stderr == result.stderr


def test_trusted_lifts_the_privileged_refusal(bastion: Bastion, tmp_path: Path) -> None:
    # An engine in an unprivileged sandbox (as in this project's CI) cannot start privileged
    # containers: its own capability set lacks some. So the pipeline is compiled and
    # explained, not started: the refusal is what --trusted lifts.
    write_pipelines(tmp_path, pipeline(steps=[step("build", "true", privileged=True)]))
    offline = {"DOCKER_HOST": NO_DOCKER}

    refused = bastion.run("exec", "--explain", cwd=tmp_path, env=offline)
    allowed = bastion.run("exec", "--explain", "--trusted", cwd=tmp_path, env=offline)

    assert refused.returncode == 2, str(refused)
    assert "steps[0].privileged" in refused.stderr, str(refused)
    assert allowed.returncode == 0, str(allowed)
    assert allowed.stderr == "", str(allowed)


@pytest.mark.docker
def test_trusted_lifts_the_host_volume_refusal_and_the_volume_works(
    cli: Bastion, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "from-host.txt").write_text("written on the host\n", encoding="utf-8")
    project = tmp_path / "project"
    project.mkdir()
    write_pipelines(
        project,
        pipeline(
            volumes=[{"name": "shared", "host": {"path": str(shared)}}],
            steps=[
                step(
                    "build",
                    "cat /shared/from-host.txt",
                    "echo written in the step > /shared/from-step.txt",
                    volumes=[{"name": "shared", "path": "/shared"}],
                )
            ],
        ),
    )

    refused = cli.run("exec", cwd=project)
    result = cli.run("exec", "--trusted", cwd=project)

    assert refused.returncode == 2, str(refused)
    assert result.returncode == 0, str(result)
    assert "written on the host" in result.printed("build"), str(result)
    assert (shared / "from-step.txt").read_text(encoding="utf-8") == "written in the step\n"
    assert_cleaned_up(docker_client, result)


# == 3. no leftovers, however a run ends =====================================================


def _busy_pipeline(*commands: str) -> dict[str, Any]:
    """A service, a temp volume and a step: every kind of resource a run creates."""
    return pipeline(
        volumes=[{"name": "cache", "temp": {}}],
        services=[step("web", "exec httpd -f -p 8080")],
        steps=[step("work", *commands, volumes=[{"name": "cache", "path": "/cache"}])],
    )


@pytest.mark.docker
@pytest.mark.parametrize(
    ("commands", "expected_exit"),
    [
        pytest.param(["echo done > /cache/f", "cat /cache/f"], 0, id="success"),
        pytest.param(["echo failing", "exit 3"], 1, id="failure"),
    ],
)
def test_nothing_is_left_after_a_run_ends(
    cli: Bastion,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    commands: list[str],
    expected_exit: int,
) -> None:
    write_pipelines(tmp_path, _busy_pipeline(*commands))

    result = cli.run("exec", cwd=tmp_path)

    assert result.returncode == expected_exit, str(result)
    created = assert_cleaned_up(docker_client, result)
    assert len(created.containers) >= 2, created  # the service and the step
    assert any(v.endswith("-vol-cache") for v in created.volumes), created


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_timeout_stops_the_run_and_leaves_nothing(
    cli: Bastion, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    write_pipelines(tmp_path, _busy_pipeline("sleep 60"))

    result = cli.run("exec", "--timeout", "2", cwd=tmp_path, timeout=2 + STOPS_WITHIN)

    assert result.returncode == 1, str(result)
    assert "timed out" in result.stdout, str(result)
    assert "killed" in result.summary_row("work"), str(result)
    assert_cleaned_up(docker_client, result)


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_stops_the_run_exits_130_and_leaves_nothing(
    cli: Bastion, docker_client: docker.DockerClient, tmp_path: Path, signum: signal.Signals
) -> None:
    write_pipelines(tmp_path, _busy_pipeline("echo started", "sleep 60"))
    running = cli.start("exec", cwd=tmp_path)
    wait_for_running_step(docker_client, running)

    running.process.send_signal(signum)
    result = cli.finish(running, timeout=STOPS_WITHIN)

    assert result.returncode == 130, str(result)
    assert "interrupted" in result.stderr, str(result)
    assert "killed" in result.summary_row("work"), str(result)
    assert_cleaned_up(docker_client, result)


# == 4. a crashed run's leftovers are removed later ==========================================


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["--cleanup", "next-run"])
def test_leftovers_of_a_killed_run_are_removed_later(
    cli: Bastion, docker_client: docker.DockerClient, tmp_path: Path, how: str
) -> None:
    crashed_dir = tmp_path / "crashed"
    crashed_dir.mkdir()
    write_pipelines(crashed_dir, _busy_pipeline("sleep 60"))
    running = cli.start("exec", cwd=crashed_dir)
    wait_for_running_step(docker_client, running)

    running.process.kill()  # SIGKILL: no chance to clean up
    running.process.communicate(timeout=STOPS_WITHIN)  # reaped: its pid is dead now
    left = leftovers(docker_client, running.pid)
    assert any(item.startswith("container ") for item in left), left
    assert any(item.startswith("network ") for item in left), left
    assert any(item.startswith("volume ") for item in left), left

    if how == "--cleanup":
        result = cli.run("exec", "--cleanup", cwd=tmp_path)
        assert result.returncode == 0, str(result)
        counts = re.search(
            r"removed (\d+) containers, (\d+) networks and (\d+) volumes", result.stdout
        )
        assert counts, str(result)
        assert all(int(n) >= 1 for n in counts.groups()), str(result)
    else:
        next_dir = tmp_path / "next"
        next_dir.mkdir()
        write_pipelines(next_dir, pipeline(steps=[step("hello", "echo hello")]))
        result = cli.run("exec", cwd=next_dir)
        assert result.returncode == 0, str(result)
        crashed = r"removed \d+ leftovers of earlier runs that had crashed"
        assert re.search(crashed, result.stderr), str(result)

    assert leftovers(docker_client, running.pid) == [], str(result)


# == 5. services ===============================================================================


@pytest.mark.docker
def test_a_step_reaches_a_service_by_its_name(
    cli: Bastion, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    write_pipelines(
        tmp_path,
        pipeline(
            services=[
                step(
                    "web",
                    'mkdir -p /www && echo "served-by-$(hostname)" > /www/index.html',
                    "exec httpd -f -p 8080 -h /www",
                )
            ],
            steps=[
                step(
                    "fetch",
                    "for i in $(seq 50); do"
                    " wget -q -O - http://web:8080/ && exit 0; sleep 0.2; done; exit 1",
                )
            ],
        ),
    )

    result = cli.run("exec", cwd=tmp_path)

    assert result.returncode == 0, str(result)
    assert "served-by-web" in result.printed("fetch"), str(result)
    assert "stopped at the end of the pipeline" in result.summary_row("web"), str(result)
    assert_cleaned_up(docker_client, result)


# == 6. DAG ordering and parallelism ===========================================================


def _stamps(result: CliResult, step_name: str) -> dict[str, tuple[float, float | None]]:
    """``stamp <step> <start> <end|->`` lines printed by a step → {step: (start, end)}."""
    stamps: dict[str, tuple[float, float | None]] = {}
    for line in result.printed(step_name):
        match = re.fullmatch(r"stamp (\S+) (\S+) (\S+)", line)
        if match:
            name, start, end = match.groups()
            stamps[name] = (float(start), None if end == "-" else float(end))
    return stamps


@pytest.mark.docker
@pytest.mark.timeout(120)
def test_steps_run_in_dag_order_and_independent_ones_overlap(cli: Bastion, tmp_path: Path) -> None:
    def timed(name: str, *, seconds: int, depends_on: list[str]) -> dict[str, Any]:
        return step(
            name,
            f"{NOW} > {name}.start",
            f"sleep {seconds}",
            f"{NOW} > {name}.end",
            image=PYTHON,
            depends_on=depends_on,
        )

    write_pipelines(
        tmp_path,
        pipeline(
            steps=[
                timed("root", seconds=0, depends_on=[]),
                timed("a", seconds=2, depends_on=["root"]),
                timed("b", seconds=2, depends_on=["root"]),
                step(
                    "c",
                    f"{NOW} > c.start",
                    'for s in root a b; do echo "stamp $s $(cat $s.start) $(cat $s.end)"; done',
                    'echo "stamp c $(cat c.start) -"',
                    image=PYTHON,
                    depends_on=["a", "b"],
                ),
            ]
        ),
    )

    result = cli.run("exec", cwd=tmp_path)

    assert result.returncode == 0, str(result)
    stamps = _stamps(result, "c")
    assert set(stamps) == {"root", "a", "b", "c"}, str(result)
    (root_start, root_end), (a_start, a_end), (b_start, b_end) = (
        stamps[name] for name in ("root", "a", "b")
    )
    c_start = stamps["c"][0]
    assert root_end is not None and a_end is not None and b_end is not None
    assert root_start <= root_end <= a_start, stamps
    assert root_end <= b_start, stamps
    assert a_start < b_end and b_start < a_end, f"a and b did not overlap: {stamps}"
    assert c_start >= max(a_end, b_end), f"c started before a and b had ended: {stamps}"


@pytest.mark.docker
def test_steps_without_depends_on_run_one_after_the_other_in_file_order(
    cli: Bastion, tmp_path: Path
) -> None:
    names = ["s1", "s2", "s3", "s4"]
    write_pipelines(
        tmp_path,
        pipeline(
            steps=[
                *(
                    step(
                        name,
                        'echo "start $DRONE_STEP_NAME" >> order.log',
                        "sleep 0.3",
                        'echo "end $DRONE_STEP_NAME" >> order.log',
                    )
                    for name in names
                ),
                step("show", "cat order.log"),
            ]
        ),
    )

    result = cli.run("exec", cwd=tmp_path)

    assert result.returncode == 0, str(result)
    expected = [f"{edge} {name}" for name in names for edge in ("start", "end")]
    assert result.printed("show") == expected, str(result)


# == 7. when and trigger conditions ============================================================

WHEN_STEPS = [
    step("main-only", RAN, when={"branch": ["main"]}),
    step("not-main", RAN, when={"branch": {"exclude": ["main"]}}),
    step("push-only", RAN, when={"event": ["push"]}),
    step("tag-only", RAN, 'echo "tag=$DRONE_TAG"', when={"event": ["tag"]}),
    step("breaks", RAN, "exit 3", when={"branch": ["feature/*"]}),
    step("on-success", RAN),
    step(
        "on-failure",
        RAN,
        'echo "status=$DRONE_BUILD_STATUS failed=$DRONE_FAILED_STEPS"',
        when={"status": ["failure"]},
    ),
    step("always", RAN, when={"status": ["success", "failure"]}),
]
WHEN_NAMES = {s["name"] for s in WHEN_STEPS}


@pytest.mark.docker
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("options", "expected_exit", "expected_ran", "expected_line"),
    [
        pytest.param(
            ["--branch", "main"],
            0,
            {"main-only", "push-only", "on-success", "always"},
            None,
            id="push-to-main",
        ),
        pytest.param(
            ["--branch", "feature/login"],
            1,
            {"not-main", "push-only", "breaks", "on-failure", "always"},
            ("on-failure", "status=failure failed=breaks"),
            id="push-to-a-feature-branch-that-fails",
        ),
        pytest.param(
            ["--branch", "main", "--event", "tag", "--tag", "v1.2.3"],
            0,
            # A tag event has no branch (as in Drone): branch conditions do not match it.
            {"not-main", "tag-only", "on-success", "always"},
            ("tag-only", "tag=v1.2.3"),
            id="tag",
        ),
    ],
)
def test_when_conditions_choose_the_steps(
    cli: Bastion,
    tmp_path: Path,
    options: list[str],
    expected_exit: int,
    expected_ran: set[str],
    expected_line: tuple[str, str] | None,
) -> None:
    write_pipelines(tmp_path, pipeline(steps=WHEN_STEPS))

    result = cli.run("exec", *options, cwd=tmp_path)

    assert result.returncode == expected_exit, str(result)
    assert ran(result) == expected_ran, str(result)
    for name in WHEN_NAMES - expected_ran:
        assert "skipped" in result.summary_row(name), str(result)
    if expected_line is not None:
        name, line = expected_line
        assert line in result.printed(name), str(result)


@pytest.mark.docker
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("options", "expected_ran", "expected_skipped"),
    [
        pytest.param(["--branch", "main"], {"on-main"}, {"on-release", "on-tag"}, id="branch"),
        pytest.param(
            ["--event", "tag", "--ref", "refs/tags/v2.0.0"],
            {"on-tag"},
            {"on-main", "on-release"},
            id="tag-ref",
        ),
    ],
)
def test_a_pipeline_whose_trigger_does_not_match_is_skipped(
    cli: Bastion,
    tmp_path: Path,
    options: list[str],
    expected_ran: set[str],
    expected_skipped: set[str],
) -> None:
    write_pipelines(
        tmp_path,
        pipeline(
            "on-main",
            trigger={"branch": ["main"]},
            steps=[step("x", 'echo "ran:$DRONE_STAGE_NAME"')],
        ),
        pipeline(
            "on-release",
            trigger={"branch": ["release/*"]},
            steps=[step("x", 'echo "ran:$DRONE_STAGE_NAME"')],
        ),
        pipeline(
            "on-tag",
            trigger={"event": ["tag"]},
            steps=[step("x", 'echo "ran:$DRONE_STAGE_NAME"', 'echo "tag=$DRONE_TAG"')],
        ),
    )

    result = cli.run("exec", *options, cwd=tmp_path)

    assert result.returncode == 0, str(result)
    assert ran(result) == expected_ran, str(result)
    for name in expected_skipped:
        assert re.search(rf"– pipeline {name}: skipped \(trigger does not match", result.stdout), (
            f"{name} not reported as skipped\n{result}"
        )
    if "on-tag" in expected_ran:
        assert "tag=v2.0.0" in result.printed("x"), str(result)


@pytest.mark.docker
def test_when_no_trigger_matches_nothing_runs_and_the_command_succeeds(
    cli: Bastion, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    write_pipelines(
        tmp_path,
        pipeline("on-release", trigger={"branch": ["release/*"]}, steps=[step("x", RAN)]),
    )

    result = cli.run("exec", "--branch", "main", cwd=tmp_path)

    assert result.returncode == 0, str(result)
    assert "– pipeline on-release: trigger does not match" in result.stdout, str(result)
    assert "no pipeline to run" in result.stdout, str(result)
    assert ran(result) == set(), str(result)
    assert_created_nothing(docker_client, result)


# == 8. hardening as a step sees it, and --explain =============================================

NET_RAW_BIT = 13


@pytest.mark.docker
def test_a_step_runs_without_net_raw_with_no_new_privs_seccomp_and_the_pids_limit(
    cli: Bastion, tmp_path: Path
) -> None:
    write_pipelines(
        tmp_path,
        pipeline(
            steps=[
                step(
                    "probe",
                    "grep -E 'CapEff|NoNewPrivs|Seccomp' /proc/self/status",
                    'echo "pids.max=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null'
                    ' || cat /sys/fs/cgroup/pids.max)"',
                )
            ]
        ),
    )

    result = cli.run("exec", cwd=tmp_path, env={"BASTION_PIDS_LIMIT": "200"})

    assert result.returncode == 0, str(result)
    status = {}
    for line in result.printed("probe"):
        key, sep, value = line.partition(":")
        if sep:
            status[key.strip()] = value.strip()
    assert not int(status["CapEff"], 16) & (1 << NET_RAW_BIT), str(result)
    assert status["NoNewPrivs"] == "1", str(result)
    assert status["Seccomp"] == "2", str(result)
    assert "pids.max=200" in result.printed("probe"), str(result)


@pytest.mark.docker
def test_explain_prints_the_effective_hardening_and_runs_nothing(
    cli: Bastion, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    write_pipelines(tmp_path, pipeline(steps=[step("build", "echo never")]))
    settings = {"BASTION_PIDS_LIMIT": "200", "BASTION_MEMORY_LIMIT": str(256 << 20)}

    result = cli.run("exec", "--explain", cwd=tmp_path, env=settings)

    assert result.returncode == 0, str(result)

    def row(setting: str) -> str:
        rows = [line for line in result.stdout.splitlines() if f"│ {setting} " in line]
        assert rows, f"no row {setting!r}\n{result}"
        return rows[0]

    assert "200" in row("pids limit") and "BASTION_PIDS_LIMIT" in row("pids limit"), str(result)
    assert "256 MiB" in row("memory limit"), str(result)
    assert "drop ALL" in row("capabilities") and "NET_RAW" not in row("capabilities"), str(result)
    assert re.search(r"│ on +│", row("no-new-privileges")), str(result)
    step_row = r"│ 1 +│ build +│ bastion/busybox:latest +│ - +│ - +│ 256 MiB +│ 200 +│"
    assert re.search(step_row, result.stdout), str(result)
    assert_created_nothing(docker_client, result)

    offline = cli.run("exec", "--explain", cwd=tmp_path, env={**settings, "DOCKER_HOST": NO_DOCKER})
    assert offline.returncode == 0, str(offline)


# == 9. limits that bite =========================================================================


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_fork_bomb_hits_the_pids_limit_and_the_engine_survives(
    cli: Bastion, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    write_pipelines(
        tmp_path,
        pipeline(
            steps=[step("bomb", "i=0; while [ $i -lt 2000 ]; do sleep 60 & i=$((i+1)); done")]
        ),
    )

    result = cli.run("exec", cwd=tmp_path, env={"BASTION_PIDS_LIMIT": "64"})

    assert result.returncode == 1, str(result)
    row = result.summary_row("bomb")
    assert "failure" in row, str(result)
    assert "pids limit 64 reached" in row, str(result)
    assert docker_client.info()["ID"]  # the engine still answers
    assert_cleaned_up(docker_client, result)


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_memory_hog_is_killed_and_reported_as_out_of_memory(
    cli: Bastion, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    write_pipelines(
        tmp_path,
        pipeline(
            steps=[
                step(
                    "hog",
                    py('b = bytearray(1 << 30); print("sur" + "vived")'),
                    image=PYTHON,
                )
            ]
        ),
    )

    result = cli.run("exec", cwd=tmp_path, env={"BASTION_MEMORY_LIMIT": str(128 << 20)})

    assert result.returncode == 1, str(result)
    assert "survived" not in result.printed("hog"), str(result)
    row = result.summary_row("hog")
    assert "failure" in row and "137" in row, str(result)
    assert "out of memory (limit 128 MiB)" in row, str(result)
    assert_cleaned_up(docker_client, result)


# == 10. the workspace ===========================================================================


@pytest.mark.docker
def test_the_directory_of_the_pipeline_file_is_the_workspace(cli: Bastion, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hello from the host\n", encoding="utf-8")
    (tmp_path / "sub" / "dir").mkdir(parents=True)
    (tmp_path / "sub" / "dir" / "data.txt").write_text("nested data\n", encoding="utf-8")
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho script-ran\n", encoding="utf-8")
    script.chmod(0o755)
    write_pipelines(
        tmp_path,
        pipeline(steps=[step("look", "pwd", "cat hello.txt sub/dir/data.txt", "./run.sh")]),
    )

    result = cli.run("exec", cwd=tmp_path)

    assert result.returncode == 0, str(result)
    assert result.printed("look") == [
        "/drone/src",
        "hello from the host",
        "nested data",
        "script-ran",
    ]


def _git(directory: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.docker
def test_a_git_checkout_gives_tracked_and_untracked_files_but_not_ignored_ones(
    cli: Bastion, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "trunk")
    (repo / ".gitignore").write_text("ignored.txt\n*.log\n", encoding="utf-8")
    (repo / "tracked.txt").write_text("tracked\n", encoding="utf-8")
    write_pipelines(
        repo,
        pipeline(
            steps=[
                step(
                    "look",
                    "cat tracked.txt untracked.txt",
                    "for f in ignored.txt build.log; do"
                    ' if [ -e "$f" ]; then echo "present:$f"; else echo "absent:$f"; fi; done',
                    'echo "branch=$DRONE_BRANCH commit=$DRONE_COMMIT_SHA"',
                    "test -d .git && echo has-git",
                )
            ]
        ),
    )
    _git(repo, "add", ".gitignore", "tracked.txt", ".drone.yml")
    _git(repo, "commit", "-q", "-m", "initial")
    (repo / "untracked.txt").write_text("untracked\n", encoding="utf-8")
    (repo / "ignored.txt").write_text("ignored\n", encoding="utf-8")
    (repo / "build.log").write_text("a log\n", encoding="utf-8")
    sha = _git(repo, "rev-parse", "HEAD")

    result = cli.run("exec", cwd=repo)

    assert result.returncode == 0, str(result)
    assert result.printed("look") == [
        "tracked",
        "untracked",
        "absent:ignored.txt",
        "absent:build.log",
        f"branch=trunk commit={sha}",
        "has-git",
    ], str(result)


# == 11. the README's demo =======================================================================


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_greeter_demo_passes_and_never_shows_its_token(
    cli: Bastion, docker_client: docker.DockerClient
) -> None:
    secrets = dict(
        line.split("=", 1)
        for line in (GREETER / "demo.secrets").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    token = secrets["greeter_token"]

    result = cli.run("exec", "--branch", "main", "--secret-file", "demo.secrets", cwd=GREETER)

    assert result.returncode == 0, str(result)
    assert "pipeline default: success" in result.stdout, str(result)
    assert f"publishing greeter with token {MASK}" in result.printed("publish"), str(result)
    for form in secret_forms(token).values():
        assert form not in result.output, str(result)
    for name in ("unit", "integration", "publish", "notify"):
        assert "success" in result.summary_row(name), str(result)
    assert_cleaned_up(docker_client, result)


# == 12. invalid input: exit 2, where and why, before Docker is touched ==========================

VALID = pipeline(steps=[step("hello", "echo hello")])

BAD_YAML = """\
kind: pipeline
type: docker
name: default
steps:
  - name: hello
    image: bastion/busybox: latest
    commands: [echo hello]
"""

BAD_SCHEMA = """\
kind: pipeline
type: docker
name: default
steps:
  - name: hello
    image: 42
    commands: [echo hello]
"""

MISSING_SECRET = """\
kind: pipeline
type: docker
name: default
steps:
  - name: hello
    image: bastion/busybox:latest
    environment:
      TOKEN:
        from_secret: token
    commands: [echo hello]
"""


@pytest.mark.parametrize(
    ("text", "args", "expected"),
    [
        pytest.param(BAD_YAML, [], [".drone.yml:6:", "[syntax]", "nothing was run"], id="yaml"),
        pytest.param(
            BAD_SCHEMA,
            [],
            [".drone.yml:6:5: error [schema] steps[0].image:", "expected a string"],
            id="schema",
        ),
        pytest.param(
            MISSING_SECRET,
            [],
            [".drone.yml:8:7:", "steps[0].environment.TOKEN", "'token'", "--secret NAME=VALUE"],
            id="missing-secret",
        ),
        pytest.param(
            None,
            ["--pipeline", "nope"],
            [".drone.yml", "no pipeline named 'nope'", "default"],
            id="unknown-pipeline",
        ),
        pytest.param(None, ["missing.yml"], ["missing.yml: no such file"], id="missing-file"),
        pytest.param(None, ["."], [".: is a directory"], id="directory"),
        pytest.param(None, ["--secret", "TOKEN"], ["--secret number 1", "NAME=VALUE"], id="secret"),
        pytest.param(
            None, ["--secret", "9lives=value"], ["--secret '9lives'", "secret name"], id="name"
        ),
        pytest.param(
            None, ["--secret-file", "nope.env"], ["nope.env: no such secret file"], id="no-file"
        ),
        pytest.param(None, ["--event", "merge"], ["--event 'merge'", "push"], id="event"),
        pytest.param(None, ["--timeout", "0"], ["--timeout 0", "positive"], id="timeout"),
        pytest.param(None, ["--timeout", "soon"], ["--timeout"], id="timeout-not-a-number"),
    ],
)
def test_invalid_input_exits_2_and_says_where_and_why(
    bastion: Bastion, tmp_path: Path, text: str | None, args: list[str], expected: list[str]
) -> None:
    if text is None:
        write_pipelines(tmp_path, VALID)
    else:
        (tmp_path / ".drone.yml").write_text(text, encoding="utf-8")

    result = bastion.run("exec", *args, cwd=tmp_path, env={"DOCKER_HOST": NO_DOCKER})

    assert result.returncode == 2, str(result)
    for words in expected:
        assert words in result.stderr, f"{words!r} missing from the message\n{result}"
    assert result.stdout == "", str(result)


def test_a_bad_line_in_a_secret_file_is_reported_with_its_line(
    bastion: Bastion, tmp_path: Path
) -> None:
    write_pipelines(tmp_path, VALID)
    (tmp_path / "ci.secrets").write_text("# comment\ngood=long-enough\nLONELY\n", encoding="utf-8")

    result = bastion.run(
        "exec", "--secret-file", "ci.secrets", cwd=tmp_path, env={"DOCKER_HOST": NO_DOCKER}
    )

    assert result.returncode == 2, str(result)
    assert "ci.secrets:3:" in result.stderr and "'LONELY'" in result.stderr, str(result)
    assert "long-enough" not in result.output, str(result)


def test_a_malformed_secret_option_never_echoes_its_value(bastion: Bastion, tmp_path: Path) -> None:
    write_pipelines(tmp_path, VALID)

    result = bastion.run(
        "exec", "--secret", "=hunter2-value", cwd=tmp_path, env={"DOCKER_HOST": NO_DOCKER}
    )

    assert result.returncode == 2, str(result)
    assert "hunter2-value" not in result.output, str(result)


def test_a_multi_line_secret_with_equals_signs_is_accepted_and_never_echoed(
    bastion: Bastion, tmp_path: Path
) -> None:
    write_pipelines(tmp_path, VALID)
    body = "q2l0ZXN0a2V5bGluZXR3b2Zvcm11bHRpbGluZXNlY3JldHMrLw+/abc=="
    (tmp_path / "ci.secrets").write_text(
        f'key="-----BEGIN KEY-----\n{body}\n-----END KEY-----"\n', encoding="utf-8"
    )

    result = bastion.run(
        "exec",
        "--secret-file",
        "ci.secrets",
        "--explain",
        cwd=tmp_path,
        env={"DOCKER_HOST": NO_DOCKER},
    )

    assert body[:20] not in result.output, str(result)
    assert result.returncode == 0, str(result)


@pytest.mark.parametrize("args", [[], ["--cleanup"]], ids=["exec", "cleanup"])
def test_an_unreachable_engine_exits_3_with_what_to_do(
    bastion: Bastion, tmp_path: Path, args: list[str]
) -> None:
    write_pipelines(tmp_path, VALID)

    result = bastion.run("exec", *args, cwd=tmp_path, env={"DOCKER_HOST": NO_DOCKER})

    assert result.returncode == 3, str(result)
    assert "cannot reach the Docker engine" in result.stderr, str(result)
    assert NO_DOCKER in result.stderr, str(result)
