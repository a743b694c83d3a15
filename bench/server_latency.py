"""Webhook-to-first-step latency with an idle runner, beyond the container start (issue 3).

The target: from the start of a ``git push`` to a local-forge repository to the start of the
first step's container, Bastion adds at most 1 s to what starting a container costs anyway.

What runs, all on 127.0.0.1 and all stopped at the end by PID:

* ``bastion server --dev`` (a subprocess, SQLite, a temporary data directory);
* one ``bastion runner --backend docker`` (a subprocess, default capacity), idle: between
  measurements it waits in its long poll;
* a local-forge repository (``POST /api/repos``) and a clone of it, from which each round
  pushes one new commit. The push's post-receive hook sends the signed request to the
  server (``POST /hook/local``), which stores the build; the runner's long poll is woken,
  it leases the stage, fetches its details and source, clones on the host, creates the
  run's network and volume, copies the workspace in, and starts the first step.

Two pipelines are measured: ``clone`` (the default: the host-side clone of the pushed commit
and the workspace copy are part of the path) and ``no clone`` (``clone: disable: true``).
Each has one step, ``true`` in ``bastion/busybox:latest``: the step prints nothing, and the
moment it starts is the ``start`` event of its container in ``docker events`` (``timeNano``,
the daemon's clock, which is this machine's clock).

The baseline, measured in the same rounds: ``docker run --rm bastion/busybox:latest true``,
from the moment the ``docker`` CLI is invoked to the ``start`` event of its container. That is
"the container start itself" (CLI start-up, create, start). The reported latency beyond the
container start is, per round, (push → first step's start) − (docker run → start).

Each round runs the three variants once, in an order that rotates from round to round, after
one untimed warm-up of each; between pushes it waits until the build has finished and then
``--idle`` seconds, so that the runner is back in its long poll. The median decides PASS or
FAIL; the maximum is reported too. A breakdown (from the server's log, with millisecond
timestamps, and from Docker's events) says where the time goes:

    push start ─ build stored (server log) ─ push returned ─ stage leased (server log)
      ─ the runner has the lease (runner log) ─ run network created ─ step container
      created ─ step container started

It exits 0 whether or not the target is met; 1 only if something fails to run or is left
behind. Run::

    .venv/bin/python bench/server_latency.py --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _processes import Child, clean_env, free_port, git, start
from bastion.engine.plan import LABEL_RUN
from bastion.runner.cleanup import LABEL_RUNNER

IMAGE = "bastion/busybox:latest"
TARGET_SECONDS = 1.0
BENCH_LABEL = "io.bastion.bench.latency"  # on the baseline's containers: KEY=<token>-<round>
RUN_LABEL = "io.bastion.bench.latency-run"  # KEY=<token>: this invocation's containers
OWNER, REPO = "bench", "latency"
BASELINE = "docker run → start"
CLONE = "push → start (clone)"
NO_CLONE = "push → start (no clone)"
_DONE = {"success", "failure", "error", "killed", "skipped", "declined"}
# Server log lines (format of `bastion server`: "%(asctime)s %(levelname)s %(name)s: ...").
_LOG_TIME = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) "
_CREATED = re.compile(_LOG_TIME + rf".*build {OWNER}/{REPO}#(\d+) created", re.MULTILINE)
_LEASED = re.compile(_LOG_TIME + r".*stage (\d+) \(\S+\) leased to runner", re.MULTILINE)
# The runner's log ("%(asctime)s %(levelname)-7s %(name)s: ...").
_TAKEN = re.compile(_LOG_TIME + r"INFO +bastion\.runner: stage (\d+): leased \(run", re.MULTILINE)


def pipeline(clone: bool) -> str:
    lines = ["kind: pipeline", "type: docker", "name: latency"]
    if not clone:
        lines += ["clone:", "  disable: true"]
    lines += ["steps:", "- name: first", f"  image: {IMAGE}", "  commands:", '  - "true"']
    return "\n".join(lines) + "\n"


# -- processes -------------------------------------------------------------------------------


@dataclass
class Server:
    child: Child
    url: str
    data_dir: Path
    admin_token: str

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=30,
            trust_env=False,
        )


def start_server(bastion: Path, tmp: Path, env: dict[str, str]) -> Server:
    port = free_port()
    data = tmp / "data"
    argv = [str(bastion), "server", "--dev", "--host", "127.0.0.1", "--port", str(port)]
    child = start("server", [*argv, "--data-dir", str(data)], env, tmp / "server.log")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=url, timeout=2, trust_env=False) as client:
        while True:
            if not child.alive():
                raise RuntimeError(f"the server exited at start-up:\n{child.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/healthz").status_code == 200:
                    break
            if time.monotonic() > deadline:
                child.stop()
                raise RuntimeError(f"the server did not answer within 60 s:\n{child.tail()}")
            time.sleep(0.05)
    token = (data / "admin.token").read_text(encoding="utf-8").strip()
    return Server(child, url, data, token)


# -- docker events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    kind: str  # container, network, volume
    action: str
    name: str
    attributes: dict[str, str]
    ns: int


def docker_events(since_ns: int, until_ns: int, *filters: str) -> list[Event]:
    """Docker's events between two moments (a bounded query: it returns by itself)."""
    done = subprocess.run(
        [
            "docker",
            "events",
            "--since",
            f"{since_ns // 1_000_000_000}.{since_ns % 1_000_000_000:09d}",
            "--until",
            f"{until_ns // 1_000_000_000}.{until_ns % 1_000_000_000:09d}",
            "--format",
            "{{json .}}",
            *filters,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"docker events failed: {done.stderr}")
    events = []
    for line in done.stdout.splitlines():
        data: dict[str, Any] = json.loads(line)
        actor = data.get("Actor") or {}
        attributes = dict(actor.get("Attributes") or {})
        events.append(
            Event(
                str(data.get("Type", "")),
                str(data.get("Action", "")),
                str(attributes.get("name", "")),
                attributes,
                int(data["timeNano"]),
            )
        )
    return events


def docker_lines(*args: str) -> list[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {done.stderr}")
    return done.stdout.split()


# -- the measurements ------------------------------------------------------------------------


@dataclass
class Round:
    """One measurement, in seconds from its start (``t0``)."""

    variant: str
    total: float  # → the container's start event
    parts: dict[str, float] = field(default_factory=dict)  # milestone → seconds after t0


@dataclass
class Bench:
    bastion: Path
    tmp: Path
    env: dict[str, str]
    idle: float
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    server: Server | None = None
    runner: Child | None = None
    runner_name: str = ""
    checkout: Path = Path()
    api: httpx.Client | None = None
    build_number: int = 0
    run_ids: list[str] = field(default_factory=list)

    # -- set-up --------------------------------------------------------------------------------

    def setup(self) -> None:
        self.server = start_server(self.bastion, self.tmp, self.env)
        self.api = self.server.api()
        self.runner_name = f"bench-latency-{self.token}"
        created = self.api.post("/api/runners", json={"name": self.runner_name})
        created.raise_for_status()
        token_file = self.tmp / "runner.token"
        token_file.write_text(created.json()["token"] + "\n")
        token_file.chmod(0o600)
        self.runner = start(
            "runner",
            [
                str(self.bastion),
                "runner",
                "--server",
                self.server.url,
                "--token-file",
                str(token_file),
                "--name",
                self.runner_name,
                "--backend",
                "docker",
            ],
            self.env,
            self.tmp / "runner.log",
        )
        repo = self.api.post("/api/repos", json={"owner": OWNER, "name": REPO})
        repo.raise_for_status()
        self.checkout = self.tmp / "checkout"
        git(self.tmp, self.env, "clone", "--quiet", repo.json()["git_push_url"], str(self.checkout))
        git(self.checkout, self.env, "checkout", "--quiet", "-B", "main")
        self._wait_runner_idle()

    def _wait_runner_idle(self) -> None:
        """Until the runner has asked for work once (its long poll is then waiting)."""
        assert self.api is not None
        assert self.runner is not None
        deadline = time.monotonic() + 60
        while True:
            if not self.runner.alive():
                raise RuntimeError(f"the runner exited:\n{self.runner.tail()}")
            runners = self.api.get("/api/runners").json()
            if any(r["name"] == self.runner_name and r["last_seen"] for r in runners):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the runner never polled:\n{self.runner.tail()}")
            time.sleep(0.1)
        time.sleep(self.idle)

    # -- variants ------------------------------------------------------------------------------

    def baseline(self, n: int) -> Round:
        label = f"{BENCH_LABEL}={self.token}-{n}"
        t0 = time.time_ns()
        done = subprocess.run(
            [
                *("docker", "run", "--rm", "--label", label),
                *("--label", f"{RUN_LABEL}={self.token}", IMAGE, "true"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"docker run failed: {done.stderr}")
        events = docker_events(t0, time.time_ns(), "--filter", f"label={label}")
        marks = {e.action: e.ns for e in events if e.kind == "container"}
        if "start" not in marks:
            raise RuntimeError(f"no start event for the baseline container ({events})")
        return Round(
            BASELINE,
            (marks["start"] - t0) / 1e9,
            {"container created": (marks["create"] - t0) / 1e9},
        )

    def push(self, clone: bool) -> Round:
        """Commit, push, wait for the build to end; the round's timings."""
        assert self.api is not None
        assert self.server is not None
        (self.checkout / ".drone.yml").write_text(pipeline(clone))
        git(self.checkout, self.env, "add", ".drone.yml")
        git(self.checkout, self.env, "commit", "--quiet", "--allow-empty", "-m", "bench")
        self.build_number += 1
        number = self.build_number
        t0 = time.time_ns()
        out = git(self.checkout, self.env, "push", "--quiet", "origin", "HEAD:refs/heads/main")
        t_pushed = time.time_ns()
        if "build requested" not in out:
            raise RuntimeError(f"the push did not request a build:\n{out}")
        build = self._wait_build(number)
        t_end = time.time_ns()
        if build["status"] != "success":
            stages = build.get("stages") or [{}]
            raise RuntimeError(
                f"build #{number} ended {build['status']}: {build.get('error')} "
                f"{stages[0].get('error', '')}"
            )
        stage_id = int(build["stages"][0]["id"])
        containers = docker_events(
            t0,
            t_end,
            "--filter",
            "type=container",
            "--filter",
            f"label={LABEL_RUNNER}={self.runner_name}",
        )
        starts = [e for e in containers if e.action == "start"]
        if not starts:
            raise RuntimeError(f"build #{number}: no container start event")
        first = min(starts, key=lambda e: e.ns)
        run_id = first.attributes.get(LABEL_RUN, "")
        self.run_ids.append(run_id)
        creates = [e for e in containers if e.action == "create" and e.name == first.name]
        infra = docker_events(
            t0,
            t_end,
            "--filter",
            "type=network",
            "--filter",
            "type=volume",
            "--filter",
            "event=create",
        )
        network = [e for e in infra if e.kind == "network" and e.name == f"bastion-{run_id}"]
        parts = {"push returned": (t_pushed - t0) / 1e9}
        log = self.server.child.log.read_text(errors="replace")
        created = _log_time(_CREATED, log, str(number))
        leased = _log_time(_LEASED, log, str(stage_id))
        if created is not None:
            parts["build stored"] = created - t0 / 1e9
        if leased is not None:
            parts["stage leased"] = leased - t0 / 1e9
        assert self.runner is not None
        taken = _log_time(_TAKEN, self.runner.log.read_text(errors="replace"), str(stage_id))
        if taken is not None:
            parts["runner has the lease"] = taken - t0 / 1e9
        if network:
            parts["network created"] = (network[0].ns - t0) / 1e9
        if creates:
            parts["container created"] = (creates[0].ns - t0) / 1e9
        return Round(CLONE if clone else NO_CLONE, (first.ns - t0) / 1e9, parts)

    def _wait_build(self, number: int) -> dict[str, Any]:
        assert self.api is not None
        deadline = time.monotonic() + 120
        path = f"/api/repos/{OWNER}/{REPO}/builds/{number}"
        while True:
            response = self.api.get(path)
            if response.status_code == 200:
                build: dict[str, Any] = response.json()
                if build["status"] in _DONE:
                    return build
            if time.monotonic() > deadline:
                raise RuntimeError(f"build #{number} did not finish within 120 s")
            time.sleep(0.05)

    # -- tear-down -----------------------------------------------------------------------------

    def teardown(self) -> list[str]:
        """Stop the runner, then the server; the list of what was left behind."""
        problems = []
        if self.runner is not None:
            code = self.runner.stop()
            if code != 0:
                problems.append(f"the runner exited {code}:\n{self.runner.tail()}")
        if self.api is not None:
            self.api.close()
        if self.server is not None:
            self.server.child.stop()
        if self.runner_name:
            label = f"label={LABEL_RUNNER}={self.runner_name}"
            ours = docker_lines("ps", "-aq", "--filter", label)
            ours += docker_lines("network", "ls", "-q", "--filter", label)
            ours += docker_lines("volume", "ls", "-q", "--filter", label)
            if ours:
                problems.append(f"left behind by the runner: {ours}")
        leftover = docker_lines("ps", "-aq", "--filter", f"label={RUN_LABEL}={self.token}")
        problems += [f"baseline container {c}" for c in leftover]
        return problems


def _log_time(pattern: re.Pattern[str], log: str, key: str) -> float | None:
    """Unix time of the first log line matching ``pattern`` with ``key``."""
    for match in pattern.finditer(log):
        if match.group(3) == key:
            stamp = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
            return stamp + int(match.group(2)) / 1000
    return None


# -- reporting -------------------------------------------------------------------------------


def run_rounds(bench: Bench, rounds: int) -> dict[str, list[Round]]:
    variants: dict[str, Callable[[int], Round]] = {
        BASELINE: bench.baseline,
        CLONE: lambda n: bench.push(clone=True),
        NO_CLONE: lambda n: bench.push(clone=False),
    }
    names = list(variants)
    print("warm-up: " + ", ".join(names), flush=True)
    for name in names:
        variants[name](0)
        if name != BASELINE:
            time.sleep(bench.idle)
    results: dict[str, list[Round]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        parts = []
        for name in order:
            result = variants[name](r + 1)
            results[name].append(result)
            parts.append(f"{name} {result.total * 1000:.0f} ms")
            if name != BASELINE:
                time.sleep(bench.idle)  # the runner is back in its long poll
        print(f"round {r + 1}/{rounds}: " + "; ".join(parts), flush=True)
    return results


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def report(results: dict[str, list[Round]]) -> None:
    base = [r.total for r in results[BASELINE]]
    print(f"\nResults: {len(base)} rounds (milliseconds)\n")
    print(
        "| variant | median | min | max | beyond the container start, per round: median | max "
        "| difference of the medians |"
    )
    print("|---|---|---|---|---|---|---|")
    print(f"| {BASELINE} | {_ms(statistics.median(base))} | {_ms(min(base))} | {_ms(max(base))} |")
    verdicts = []
    for name in (CLONE, NO_CLONE):
        totals = [r.total for r in results[name]]
        beyond = [t - b for t, b in zip(totals, base, strict=True)]
        print(
            f"| {name} | {_ms(statistics.median(totals))} | {_ms(min(totals))} | "
            f"{_ms(max(totals))} | {_ms(statistics.median(beyond))} | {_ms(max(beyond))} | "
            f"{_ms(statistics.median(totals) - statistics.median(base))} |"
        )
        verdicts.append((name, statistics.median(beyond), max(beyond), statistics.median(totals)))
    print("\nBreakdown, medians in ms after `git push` starts (baseline: after `docker run`):")
    milestones = [
        "build stored",
        "push returned",
        "stage leased",
        "runner has the lease",
        "network created",
        "container created",
    ]
    print("| variant | " + " | ".join(milestones) + " | container started |")
    print("|---|" + "---|" * (len(milestones) + 1))
    for name in (BASELINE, CLONE, NO_CLONE):
        cells = []
        for milestone in milestones:
            values = [r.parts[milestone] for r in results[name] if milestone in r.parts]
            cells.append(_ms(statistics.median(values)) if values else "")
        total = statistics.median(r.total for r in results[name])
        print(f"| {name} | " + " | ".join(cells) + f" | {_ms(total)} |")
    print()
    for name, median, worst, total in verdicts:
        verdict = "PASS" if median <= TARGET_SECONDS else "FAIL"
        print(
            f"{verdict}: {name}: {median * 1000:.0f} ms beyond the container start (median; "
            f"max {worst * 1000:.0f} ms; push → start {total * 1000:.0f} ms, "
            f"{total / statistics.median(base):.2f}x the docker run baseline); "
            f"target <= {TARGET_SECONDS * 1000:.0f} ms"
        )
    print("(the default pipeline, with its clone, is the one the issue's target is about)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (5)")
    parser.add_argument(
        "--idle", type=float, default=2.0, help="seconds the runner idles between pushes (2)"
    )
    args = parser.parse_args(argv)
    bastion = Path(sys.executable).with_name("bastion")
    if not bastion.exists():
        print(f"no bastion console script next to {sys.executable}", file=sys.stderr)
        return 1
    print(f"server latency: {args.rounds} rounds, image {IMAGE}, runner idle {args.idle:g} s")
    print(
        f"host {socket.gethostname()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"docker {docker_lines('version', '--format', '{{.Server.Version}}')[0]}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    status = 0
    with tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp_name:
        tmp = Path(tmp_name)
        bench = Bench(bastion, tmp, clean_env(tmp / "home"), args.idle)
        try:
            bench.setup()
            report(run_rounds(bench, args.rounds))
        except Exception as exc:
            print(f"\nbenchmark failed: {exc}", file=sys.stderr)
            for child in (bench.server.child if bench.server else None, bench.runner):
                if child is not None:
                    print(f"--- {child.name} log (end) ---\n{child.tail()}", file=sys.stderr)
            status = 1
        finally:
            problems = bench.teardown()
            for problem in problems:
                print(f"PROBLEM: {problem}", file=sys.stderr)
            if problems:
                status = 1
            else:
                print("\nserver and runner stopped; nothing left behind")
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return status


if __name__ == "__main__":
    sys.exit(main())
