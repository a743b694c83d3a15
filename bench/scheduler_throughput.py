"""Scheduler throughput with the fake backend and 10 runners, never a double lease (issue 3).

The target: at least 100 stages per second leased *and* completed, with every stage leased
exactly once.

What runs, all on 127.0.0.1 and all stopped at the end by PID:

* ``bastion server --dev`` (a subprocess, SQLite in WAL mode, a temporary data directory);
* a local-forge repository whose ``.drone.yml`` has ``--pipelines`` (10) pipelines, each one
  step on the fake backend (``BASTION_FAKE_SLEEP: 0``, no output) and ``clone: disable:
  true`` by default (``--clone`` keeps the clone: then every stage also bundles the commit on
  the server and clones it on the runner, which measures git rather than the scheduler);
* ``--builds`` (100) builds of it: the push makes the first, ``POST /api/repos/.../builds``
  the others, so ``--pipelines`` x ``--builds`` (1000) stages are pending *before* any
  runner starts;
* then ``--runners`` (10) runners with the fake backend and ``--capacity`` (2, the default of
  ``bastion runner``) each: ``bastion runner --backend fake`` subprocesses (``--mode
  process``, the default), or ``bastion.runner.Runner`` objects in threads of this script's
  process (``--mode thread``: one interpreter, so one GIL, for the ten of them).

Each stage goes through the whole protocol: long-poll and lease (whose reply carries the
stage's details), step updates (for these instant steps normally none: the runner holds an
update half a second for a newer state and drops what is still waiting at the end, as
``complete`` carries the final steps), complete (each an HTTP request), with the server's
build state machine settling the build after each change. Timings come from the server's
log (millisecond timestamps): a stage is leased at its "leased to runner" line and completed
at its "ended" line.

* **overall** = stages / (first lease → last completion): the issue's measure. It includes
  the runners' start-up, one after the other on a busy machine (a subprocess takes about a
  second to import), while the first ones already work.
* **steady** = completions after the moment the last runner took its first stage, divided
  by the time from then to the last completion: all runners at work.

No double lease, checked three ways: the server logs exactly one lease per stage; the runners'
own logs (``stage N: leased``) name each stage exactly once across all runners, and the same
runner as the server's log; the database has each stage ``success`` with that runner as its
machine, and one successful step.

Baselines, measured in the same run:

* **store floor**: the database work of the same cycle without HTTP, the runners or the build
  state machine: ``--runners`` threads of this process call, on a fresh SQLite store with the
  same stages, exactly what ``Scheduler.try_lease`` and ``BuildService.end_stage`` call on the
  store to lease and to end a stage (``pending_stage_keys(limit=20)`` with a random start,
  ``take_stage``, ``finish_stage``). Bastion can only be slower; the ratio
  says how much of the storage's capacity the whole system reaches.
* **HTTP floor**: requests per second the same server answers for ``GET /version`` (no
  database, no auth) from ``--runners`` client threads, before the runners start. Divided by
  the HTTP requests a stage costs (counted in the server's access log) it bounds what the
  protocol can reach on this machine.

It exits 0 whether or not the target is met; 1 only if something fails to run, a stage is
leased twice, or something is left running. Run::

    .venv/bin/python bench/scheduler_throughput.py --runners 10 --builds 100 --pipelines 10

``BENCH_KEEP=DIR`` keeps the server's and the runners' logs and the database in ``DIR``
instead of a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import random
import re
import secrets
import signal
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from _processes import Child, clean_env, free_port, git, start
from bastion.crypto import hash_token, new_token
from bastion.runner import Runner, RunnerSettings
from bastion.store.repository import Store
from bastion.store.types import NewBuild, NewStage, Status

TARGET_PER_SECOND = 100.0
OWNER, REPO = "bench", "throughput"
_DONE = ("success", "failure", "error", "killed", "skipped", "declined")
_LOG_TIME = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) "
_LEASED = re.compile(_LOG_TIME + r".*: stage (\d+) \(\S+\) leased to runner (\S+)$", re.M)
_ENDED = re.compile(_LOG_TIME + r".*: stage (\d+) \(\S+\) ended: (\w+)$", re.M)
_ACCESS = re.compile(_LOG_TIME + r"INFO bastion\.server\.access: (\w+) (\S+) (\d+) (\d+)ms$", re.M)
_RUNNER_LEASED = re.compile(r"bastion\.runner: stage (\d+): leased \(run ")
_MODES = {"process": "subprocesses", "thread": "threads of this process"}
_RUNNER_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"  # as `bastion runner`


def pipelines(count: int, clone: bool) -> str:
    docs = []
    for n in range(1, count + 1):
        lines = ["kind: pipeline", "type: docker", f"name: p{n:03d}"]
        if not clone:
            lines += ["clone:", "  disable: true"]
        lines += [
            "steps:",
            "- name: fake",
            "  image: bastion/busybox:latest",
            "  environment:",
            '    BASTION_FAKE_SLEEP: "0"',
            "  commands:",
            '  - "true"',
        ]
        docs.append("\n".join(lines) + "\n")
    return "---\n".join(docs)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def _stamp(date: str, millis: str) -> float:
    return time.mktime(time.strptime(date, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000


# -- processes -------------------------------------------------------------------------------


# -- the server and its runners --------------------------------------------------------------


@dataclass
class Result:
    stages: int
    overall: float  # stages per second, first lease → last completion
    steady: float  # completions per second once every runner has worked
    window: float  # seconds, first lease → last completion
    ramp: float  # seconds, first lease → the last runner's first lease
    wall: float  # seconds, runners started → every stage done
    per_runner: dict[str, int]
    server_cpu: float  # CPU seconds of the server, runners started → all done
    runner_cpu: float  # CPU seconds of the runners (process mode: with their start-up)
    machine_busy: float  # share of all CPUs busy (everyone's), runners started → all done
    requests: Counter[str]  # access-log lines during the window, by "METHOD path"
    request_ms: dict[str, float]  # their mean time in the server, by "METHOD path"
    problems: list[str]


@dataclass
class Bench:
    bastion: Path
    tmp: Path
    env: dict[str, str]
    args: argparse.Namespace
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    server: Child | None = None
    url: str = ""
    admin: httpx.Client | None = None
    children: list[Child] = field(default_factory=list)
    threads: list[tuple[threading.Thread, threading.Event]] = field(default_factory=list)
    runner_log: Path = Path()
    names: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)

    def cpu_mark(self, when: str) -> None:
        """CPU used so far by the server, by the runners, and by the whole machine."""
        assert self.server is not None
        self.cpu[f"server {when}"] = cpu_seconds(self.server.process.pid)
        if self.children:
            self.cpu[f"runners {when}"] = sum(cpu_seconds(c.process.pid) for c in self.children)
        else:
            times = os.times()
            self.cpu[f"runners {when}"] = times.user + times.system
        busy, total = machine_busy()
        self.cpu[f"busy {when}"], self.cpu[f"total {when}"] = busy, total

    @property
    def data(self) -> Path:
        return self.tmp / "data"

    def start_server(self) -> None:
        port = free_port()
        argv = [str(self.bastion), "server", "--dev", "--host", "127.0.0.1", "--port", str(port)]
        self.server = start(
            "server", [*argv, "--data-dir", str(self.data)], self.env, self.tmp / "server.log"
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=self.url, timeout=2, trust_env=False) as client:
            while True:
                if not self.server.alive():
                    raise RuntimeError(f"the server exited at start-up:\n{self.server.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/healthz").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not answer in 60 s:\n{self.server.tail()}")
                time.sleep(0.05)
        token = (self.data / "admin.token").read_text(encoding="utf-8").strip()
        self.admin = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
            trust_env=False,
        )

    def enqueue(self) -> int:
        """The repository, its pipelines, the builds and the runner tokens; stages pending."""
        assert self.admin is not None
        repo = self.admin.post("/api/repos", json={"owner": OWNER, "name": REPO})
        repo.raise_for_status()
        checkout = self.tmp / "checkout"
        git(self.tmp, self.env, "clone", "--quiet", repo.json()["git_push_url"], str(checkout))
        git(checkout, self.env, "checkout", "--quiet", "-B", "main")
        (checkout / ".drone.yml").write_text(pipelines(self.args.pipelines, self.args.clone))
        git(checkout, self.env, "add", ".drone.yml")
        git(checkout, self.env, "commit", "--quiet", "-m", "throughput")
        out = git(checkout, self.env, "push", "--quiet", "origin", "HEAD:refs/heads/main")
        if "build requested" not in out:
            raise RuntimeError(f"the push did not request a build:\n{out}")
        builds = f"/api/repos/{OWNER}/{REPO}/builds"
        for _ in range(self.args.builds - 1):
            self.admin.post(builds, params={"branch": "main"}).raise_for_status()
        for n in range(self.args.runners):
            name = f"bench-tp-{self.token}-{n:02d}"
            created = self.admin.post("/api/runners", json={"name": name})
            created.raise_for_status()
            self.names.append(name)
            self.tokens.append(str(created.json()["token"]))
        counts = self.stage_counts()
        expected = int(self.args.pipelines) * int(self.args.builds)
        if counts.get("pending", 0) != expected:
            raise RuntimeError(f"expected {expected} pending stages, the database has {counts}")
        return expected

    def http_floor(self, seconds: float) -> float:
        """Requests per second for GET /version from ``--runners`` client threads."""
        stop = time.monotonic() + seconds
        counts: list[int] = []

        def hammer() -> None:
            n = 0
            with httpx.Client(base_url=self.url, timeout=10, trust_env=False) as client:
                while time.monotonic() < stop:
                    client.get("/version").raise_for_status()
                    n += 1
            counts.append(n)

        threads = [threading.Thread(target=hammer) for _ in range(self.args.runners)]
        begin = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(counts) / (time.monotonic() - begin)

    def start_runners(self) -> None:
        if self.args.mode == "process":
            for n, (name, token) in enumerate(zip(self.names, self.tokens, strict=True)):
                token_file = self.tmp / f"runner-{n}.token"
                token_file.write_text(token + "\n")
                token_file.chmod(0o600)
                argv = [str(self.bastion), "runner", "--server", self.url]
                argv += ["--token-file", str(token_file), "--name", name, "--backend", "fake"]
                argv += ["--capacity", str(self.args.capacity)]
                log = self.tmp / f"runner-{n}.log"
                self.children.append(start(name, argv, self.env, log))
            return
        self.runner_log = self.tmp / "runners.log"
        handler = logging.FileHandler(self.runner_log)
        handler.setFormatter(logging.Formatter(_RUNNER_FORMAT))
        runner_logger = logging.getLogger("bastion.runner")
        runner_logger.addHandler(handler)
        runner_logger.setLevel(logging.INFO)
        logging.getLogger("httpx").setLevel(logging.WARNING)
        for name, token in zip(self.names, self.tokens, strict=True):
            settings = RunnerSettings(
                server=self.url, token=token, name=name, capacity=self.args.capacity, backend="fake"
            )
            stop = threading.Event()
            runner = Runner(settings, stop)
            thread = threading.Thread(target=runner.run, name=f"bench-{name}", daemon=True)
            thread.start()
            self.threads.append((thread, stop))

    def stage_counts(self) -> dict[str, int]:
        with contextlib.closing(
            sqlite3.connect(f"file:{self.data / 'bastion.db'}?mode=ro", uri=True, timeout=30)
        ) as db:
            return dict(db.execute("SELECT status, COUNT(*) FROM stages GROUP BY status"))

    def wait_done(self, total: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            counts = self.stage_counts()
            if sum(counts.get(s, 0) for s in _DONE) >= total:
                self.cpu_mark("done")
                return
            for child in self.children:
                if not child.alive():
                    raise RuntimeError(f"runner {child.name} exited:\n{child.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"not done after {timeout:.0f} s: {counts}")
            time.sleep(0.2)

    def stop_runners(self) -> list[str]:
        problems = []
        for child in self.children:
            child.terminate()
        for child in self.children:
            code = child.wait()
            if code != 0:
                problems.append(f"runner {child.name} exited {code}:\n{child.tail()}")
        for _, stop in self.threads:
            stop.set()
        for thread, _ in self.threads:
            thread.join(60)
            if thread.is_alive():
                problems.append(f"runner thread {thread.name} did not stop")
        return problems

    def stop_server(self) -> list[str]:
        if self.admin is not None:
            self.admin.close()
        if self.server is None:
            return []
        self.server.terminate()
        code = self.server.wait()
        # uvicorn re-raises the SIGTERM it handled once it has shut down: -15 is a clean stop.
        return (
            []
            if code in (0, -signal.SIGTERM)
            else [f"the server exited {code}:\n{self.server.tail()}"]
        )

    def runner_logs(self) -> dict[str, str]:
        if self.children:
            return {c.name: c.log.read_text(errors="replace") for c in self.children}
        text = self.runner_log.read_text(errors="replace") if self.runner_log.name else ""
        return {"(threads)": text}

    # -- analysis ------------------------------------------------------------------------------

    def analyse(self, total: int, wall: float) -> Result:
        assert self.server is not None
        log = self.server.log.read_text(errors="replace")
        problems: list[str] = []
        leases: dict[int, list[tuple[float, str]]] = defaultdict(list)
        for m in _LEASED.finditer(log):
            leases[int(m.group(3))].append((_stamp(m.group(1), m.group(2)), m.group(4)))
        ends: dict[int, tuple[float, str]] = {}
        for m in _ENDED.finditer(log):
            ends[int(m.group(3))] = (_stamp(m.group(1), m.group(2)), m.group(4))
        twice = {s: v for s, v in leases.items() if len(v) != 1}
        if twice:
            problems.append(f"stages leased more than once (server log): {twice}")
        if len(leases) != total or len(ends) != total:
            problems.append(f"{len(leases)} stages leased, {len(ends)} ended, of {total}")
        failed = {s: v[1] for s, v in ends.items() if v[1] != "success"}
        if failed:
            problems.append(f"stages that did not succeed: {dict(list(failed.items())[:10])}")

        # The runners' own view: each stage leased by exactly one runner, the server's.
        by_runner: dict[int, list[str]] = defaultdict(list)
        for name, text in self.runner_logs().items():
            for m in _RUNNER_LEASED.finditer(text):
                by_runner[int(m.group(1))].append(name)
        if len(by_runner) != total:
            problems.append(f"the runners logged {len(by_runner)} leases, not {total}")
        for stage, names in by_runner.items():
            if len(names) != 1:
                problems.append(f"stage {stage} leased by {names} (runner logs)")
            elif self.children and leases.get(stage) and leases[stage][0][1] != names[0]:
                problems.append(f"stage {stage}: server says {leases[stage]}, runner {names}")

        # The database: one runner per stage, the one that leased it, and one step.
        with contextlib.closing(
            sqlite3.connect(f"file:{self.data / 'bastion.db'}?mode=ro", uri=True)
        ) as db:
            rows = db.execute(
                "SELECT s.id, s.status, s.machine, s.runner_id, "
                "(SELECT COUNT(*) FROM steps t WHERE t.stage_id = s.id AND t.status = 'success'),"
                "(SELECT COUNT(*) FROM steps t WHERE t.stage_id = s.id) FROM stages s"
            ).fetchall()
        for stage_id, status, machine, runner_id, good_steps, steps in rows:
            leased_to = leases.get(stage_id, [(0.0, "")])[0][1]
            if status != "success" or not machine or runner_id is None or machine != leased_to:
                problems.append(f"stage {stage_id}: {status}, machine {machine!r} ({leased_to})")
            if (good_steps, steps) != (1, 1):
                problems.append(f"stage {stage_id}: {good_steps} of {steps} steps succeeded")
        if len(rows) != total:
            problems.append(f"the database has {len(rows)} stages, not {total}")

        first_lease = min(v[0][0] for v in leases.values())
        last_end = max(t for t, _ in ends.values())
        first_of_runner: dict[str, float] = {}
        per_runner: Counter[str] = Counter()
        for values in leases.values():
            at, name = values[0]
            per_runner[name] += 1
            first_of_runner[name] = min(at, first_of_runner.get(name, at))
        all_active = max(first_of_runner.values())
        window = max(last_end - first_lease, 1e-3)
        steady_count = sum(1 for t, _ in ends.values() if t > all_active)
        steady = steady_count / max(last_end - all_active, 1e-3)

        requests: Counter[str] = Counter()
        spent: dict[str, float] = defaultdict(float)
        for m in _ACCESS.finditer(log):
            at = _stamp(m.group(1), m.group(2))
            # The runners' calls only (not the HTTP floor's, nor the set-up's).
            if m.group(4).startswith("/rpc/") and first_lease - 0.5 <= at <= last_end + 0.5:
                path = re.sub(r"/\d+(/|$)", r"/{id}\1", m.group(4))
                key = f"{m.group(3)} {path}"
                requests[key] += 1
                spent[key] += int(m.group(6))
        request_ms = {k: spent[k] / n for k, n in requests.items()}
        cpu = self.cpu
        busy = (cpu["busy done"] - cpu["busy start"]) / (cpu["total done"] - cpu["total start"])
        return Result(
            total,
            total / window,
            steady,
            window,
            all_active - first_lease,
            wall,
            dict(per_runner),
            cpu["server done"] - cpu["server start"],
            cpu["runners done"] - cpu["runners start"],
            busy,
            requests,
            request_ms,
            problems,
        )


# -- the store floor -------------------------------------------------------------------------


def store_floor(tmp: Path, builds: int, pipelines: int, threads: int) -> tuple[float, int]:
    """Stages per second for the store calls of lease + end, from ``threads`` threads."""
    store = Store(f"sqlite:///{tmp / 'floor.db'}", secret_key=secrets.token_bytes(32))
    try:
        store.migrate()
        repo = store.create_repo(OWNER, REPO)
        runners = [
            store.create_runner(f"floor-{n}", hash_token(new_token("runner")))
            for n in range(threads)
        ]
        stages = [
            NewStage(number=n, name=f"p{n:03d}", status=Status.PENDING)
            for n in range(1, 1 + pipelines)
        ]
        for _ in range(builds):
            store.create_build(repo.id, NewBuild(event="custom"), stages)
        done = Counter[int]()
        lock = threading.Lock()

        def work(index: int) -> None:
            runner = runners[index]
            while True:
                leased = None
                keys = store.pending_stage_keys(limit=20)  # as Scheduler.try_lease
                start = random.randrange(len(keys)) if keys else 0
                for key in keys[start:] + keys[:start]:
                    lease = hash_token(new_token("lease"))
                    expires = int(time.time()) + 60
                    taken = store.take_stage(key.id, runner.id, runner.name, lease, expires)
                    if taken is not None:
                        leased = taken[0]
                        break
                if leased is None:
                    if not store.pending_stage_keys(limit=1):
                        return
                    continue
                # As BuildService.end_stage.
                store.finish_stage(leased.id, status=Status.SUCCESS, error="")
                with lock:
                    done[leased.id] += 1

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        begin = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - begin
        twice = sum(1 for n in done.values() if n != 1)
        return len(done) / elapsed, twice
    finally:
        store.close()


# -- main ------------------------------------------------------------------------------------


def report(
    result: Result, floor: float, floor_twice: int, http: float, args: argparse.Namespace
) -> None:
    per_stage = sum(result.requests.values()) / result.stages
    print(
        f"\nResults: {result.stages} stages, {args.runners} runners ({_MODES[args.mode]}), "
        f"capacity {args.capacity}, clone {'on' if args.clone else 'off'}\n"
    )
    print("| measure | value |")
    print("|---|---|")
    print(
        f"| overall: first lease → last completion | {result.overall:.1f} stages/s "
        f"({result.window:.2f} s) |"
    )
    print(
        f"| steady: after every runner's first lease | {result.steady:.1f} stages/s "
        f"(ramp {result.ramp:.2f} s) |"
    )
    print(f"| wall: runners started → all done | {result.wall:.2f} s |")
    print(f"| store floor ({args.runners} threads, same stages) | {floor:.1f} stages/s |")
    print(f"| HTTP floor: GET /version, {args.runners} clients | {http:.0f} requests/s |")
    print(f"| HTTP requests per stage (access log) | {per_stage:.2f} |")
    print(
        f"| server CPU, runners started → all done | {result.server_cpu:.1f} s "
        f"({result.server_cpu / result.wall:.2f} cores; "
        f"{result.server_cpu / result.stages * 1000:.1f} ms/stage) |"
    )
    print(
        f"| runners' CPU, same span{' (with start-up)' if args.mode == 'process' else ''} | "
        f"{result.runner_cpu:.1f} s ({result.runner_cpu / result.stages * 1000:.1f} ms/stage) |"
    )
    print(
        f"| machine busy (all users), same span | {result.machine_busy * 100:.0f} % "
        f"of {os.cpu_count()} CPUs |"
    )
    print(f"| HTTP floor / requests per stage | {http / per_stage:.0f} stages/s |")
    print(
        f"\nratio overall / store floor: {result.overall / floor:.2f}; "
        f"overall / (HTTP floor / requests per stage): {result.overall / (http / per_stage):.2f}"
    )
    spread = sorted(result.per_runner.values())
    print(
        f"stages per runner: min {spread[0]}, median {statistics.median(spread):g}, "
        f"max {spread[-1]} ({len(spread)} runners leased)"
    )
    print(
        "\nrunner requests in the window (server access log): count, per stage, "
        "mean ms in the server"
    )
    for key, count in result.requests.most_common():
        print(
            f"  {key:<40} {count:>6} {count / result.stages:>6.2f} {result.request_ms[key]:>7.1f}"
        )
    leases = "never a double lease" if not result.problems and not floor_twice else "PROBLEMS"
    print(
        f"\nlease check: {leases} (server log, runner logs, database; store floor: "
        f"{floor_twice} stages leased twice)"
    )
    for problem in result.problems[:20]:
        print(f"PROBLEM: {problem}")
    verdict = "PASS" if result.overall >= TARGET_PER_SECOND and not result.problems else "FAIL"
    print(
        f"{verdict}: {result.overall:.1f} stages/s leased and completed (overall; steady "
        f"{result.steady:.1f}); target >= {TARGET_PER_SECOND:.0f} stages/s, no double lease"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runners", type=int, default=10, help="runners (10)")
    parser.add_argument("--capacity", type=int, default=2, help="stages per runner at once (2)")
    parser.add_argument("--builds", type=int, default=100, help="builds (100)")
    parser.add_argument("--pipelines", type=int, default=10, help="pipelines per build (10)")
    parser.add_argument("--mode", choices=("process", "thread"), default="process")
    parser.add_argument(
        "--clone",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="keep the clone of each stage (bundle on the server, git clone on the runner)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after (600 s)")
    args = parser.parse_args(argv)
    bastion = Path(sys.executable).with_name("bastion")
    if not bastion.exists():
        print(f"no bastion console script next to {sys.executable}", file=sys.stderr)
        return 1
    print(
        f"scheduler throughput: {args.builds} builds x {args.pipelines} pipelines, "
        f"{args.runners} runners ({_MODES[args.mode]}, capacity {args.capacity}), fake backend"
    )
    print(
        f"host {socket.gethostname()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    status = 0
    keep = os.environ.get("BENCH_KEEP")
    with tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp_name:
        tmp = Path(keep or tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        bench = Bench(bastion, tmp, clean_env(tmp / "home"), args)
        result: Result | None = None
        problems: list[str] = []
        try:
            bench.start_server()
            begin = time.monotonic()
            total = bench.enqueue()
            print(f"enqueued {total} stages in {time.monotonic() - begin:.1f} s", flush=True)
            http = bench.http_floor(3.0)
            print(f"HTTP floor: {http:.0f} requests/s", flush=True)
            bench.cpu_mark("start")
            begin = time.monotonic()
            bench.start_runners()
            bench.wait_done(total, args.timeout)
            wall = time.monotonic() - begin
            print(f"all {total} stages done {wall:.1f} s after the runners started", flush=True)
        except Exception as exc:
            print(f"\nbenchmark failed: {exc}", file=sys.stderr)
            if bench.server is not None:
                print(f"--- server log (end) ---\n{bench.server.tail()}", file=sys.stderr)
            status = 1
        finally:
            problems += bench.stop_runners()
            problems += bench.stop_server()
        if status == 0:
            result = bench.analyse(total, wall)
            floor, floor_twice = store_floor(tmp, args.builds, args.pipelines, args.runners)
            report(result, floor, floor_twice, http, args)
            if result.problems or floor_twice:
                status = 1
        for problem in problems:
            print(f"PROBLEM: {problem}", file=sys.stderr)
        if problems:
            status = 1
        else:
            print("\nserver and runners stopped")
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return status


if __name__ == "__main__":
    sys.exit(main())
