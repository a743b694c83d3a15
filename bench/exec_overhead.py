"""Per-step overhead of ``bastion exec`` against raw ``docker run --rm`` (engine issue).

The target: for a sequential pipeline of ``--steps`` (10) steps, each ``echo step N`` in
``bastion/busybox:latest``, ``bastion exec`` takes at most 1.25x the time of running the
same command with ``docker run --rm`` once per step, measured in the same run.

A temporary directory gets the ``.drone.yml`` and a small file (so the workspace copy is
real, if tiny). Each round runs every variant once, in an order that rotates from round to
round, so machine noise hits all of them; after one untimed warm-up of each, ``--rounds``
rounds are timed with ``time.perf_counter`` and the median and minimum are reported:

* ``raw``: ``docker run --rm bastion/busybox:latest sh -c 'echo step N'`` for N = 1..steps,
  one after the other, through the docker CLI. The only addition is a ``--label`` (metadata,
  no measurable cost) that lets the script prove nothing was left behind.
* ``bastion exec``: the ``bastion`` console script next to ``sys.executable``, as a
  subprocess. This is what a user waits for, so it *includes* Python start-up and imports,
  the git probes, cleanup of stale runs, network and volume creation, the workspace copy
  and the teardown. The PASS/FAIL verdict uses this number.
* ``in-process``: the same work without interpreter start-up and imports (done once, when
  this script loads): parse, compile (the hardening of ``bastion exec``), tar the
  workspace, a new ``DockerBackend``, ``cleanup_stale``, then ``Executor.run`` with a
  ``NullReporter`` (setup, workspace copy, steps, teardown).
* ``raw hardened`` (diagnostic, not part of the verdict): ``docker run --rm`` per step with
  the flags Bastion gives a step (capabilities, no-new-privileges, pids, memory and CPU
  limits, ``none`` log driver, a user bridge network and the workspace volume, both made
  beforehand and not timed). It separates what the hardened container costs Docker from what
  Bastion's own orchestration costs.

``--profile`` (on by default) then explains where the time goes: interpreter and import time
(by top-level package, from ``-X importtime``), the docker CLI's own start-up, what
``bastion exec`` costs when nothing runs, an instrumented in-process run (every backend call
and every Engine API request timed, and the run's critical path: setup, workspace copy, each
step, the gaps between steps, teardown), what one ``docker run`` costs with parts of
Bastion's container settings, and the sensitivity to ``Executor(poll_interval=...)``.

It prints a report and exits 0 whether or not the target is met: it is a measurement, not a
test. It exits 1 only if a variant fails to run or something was left behind. Run::

    .venv/bin/python bench/exec_overhead.py --steps 10 --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bastion.backends.docker import DockerBackend
from bastion.cli.sources import build_context, workspace_archive
from bastion.engine.backend import CleanupReport, OutputChunk, StepExit
from bastion.engine.compiler import CompileOptions, compile_pipeline
from bastion.engine.executor import Executor, NullReporter, RunResult
from bastion.engine.hardening import load_hardening
from bastion.engine.masking import SecretMasker
from bastion.engine.plan import (
    LABEL_MANAGED,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_RUN,
    Plan,
    StepPlan,
)
from bastion.engine.status import State
from bastion.spec.conditions import MatchContext
from bastion.spec.context import BuildContext
from bastion.spec.parse import parse

IMAGE = "bastion/busybox:latest"
TARGET_RATIO = 1.25
BENCH_LABEL = "io.bastion.bench"  # on what the raw variants create, to check for leftovers
RAW_ARGV = ("docker", "run", "--rm", "--label")
RAW = "raw docker run --rm"
CLI = "bastion exec (subprocess)"
INPROC = "bastion in-process"
HARDENED = "raw docker run --rm, hardened"


# -- the pipeline ----------------------------------------------------------------------------


def write_project(directory: Path, steps: int, *, trigger: str = "") -> Path:
    """A ``.drone.yml`` of ``steps`` sequential steps and a small file to copy in."""
    lines = ["kind: pipeline", "type: docker", "name: overhead", "", trigger, "steps:"]
    for n in range(1, steps + 1):
        lines += [f"- name: step-{n}", f"  image: {IMAGE}", "  commands:", f"  - echo step {n}"]
    path = directory / ".drone.yml"
    path.write_text("\n".join(lines) + "\n")
    (directory / "README.txt").write_text("a small file, so that the workspace copy is real\n")
    return path


def build_plan(file: Path, context: BuildContext) -> Plan:
    """Parse and compile as ``bastion exec`` does (same hardening, same owner labels)."""
    result = parse(file.read_bytes(), filename=str(file))
    if not result.ok:
        raise RuntimeError([d.format() for d in result.diagnostics])
    options = CompileOptions(
        run_id=secrets.token_hex(5),
        hardening=load_hardening(),
        owner_labels={LABEL_OWNER_PID: str(os.getpid()), LABEL_OWNER_HOST: os.uname().nodename},
        host_arch=platform.machine(),
    )
    return compile_pipeline(result.manifest, 0, context, {}, options)


def exec_context(directory: Path) -> BuildContext:
    return build_context(
        directory,
        event="push",
        branch=None,
        ref=None,
        repo=None,
        target="",
        cron="",
        action="",
        tag="",
        trusted=False,
        now=int(time.time()),
    )


# -- the variants ----------------------------------------------------------------------------


@dataclass
class Bench:
    directory: Path
    file: Path
    steps: int
    bastion: Path
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    skip_file: Path = Path()
    cli_pids: list[int] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    network: str = ""
    volume: str = ""

    def raw(self) -> float:
        begin = time.perf_counter()
        for n in range(1, self.steps + 1):
            done = subprocess.run(
                [*RAW_ARGV, f"{BENCH_LABEL}={self.token}", IMAGE, "sh", "-c", f"echo step {n}"],
                capture_output=True,
                text=True,
                check=False,
            )
            _expect(done.returncode == 0 and done.stdout == f"step {n}\n", "docker run", done)
        return time.perf_counter() - begin

    def cli(self) -> float:
        begin = time.perf_counter()
        process = subprocess.Popen(
            [str(self.bastion), "exec", str(self.file)],
            cwd=self.directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = process.communicate()
        elapsed = time.perf_counter() - begin
        self.cli_pids.append(process.pid)
        ok = process.returncode == 0 and f"step {self.steps}\n" in out
        _expect(
            ok,
            "bastion exec",
            subprocess.CompletedProcess(process.args, process.returncode, out, err),
        )
        return elapsed

    def inproc(
        self,
        *,
        poll_interval: float = 0.1,
        backend_factory: Callable[[], DockerBackend] = DockerBackend,
    ) -> tuple[float, RunResult]:
        begin = time.perf_counter()
        context = exec_context(self.directory)
        plan = build_plan(self.file, context)
        self.run_ids.append(plan.run_id)
        archive = workspace_archive(self.directory)
        backend = backend_factory()
        backend.cleanup_stale()
        executor = Executor(backend, SecretMasker(()), NullReporter(), poll_interval=poll_interval)
        run = executor.run(plan, MatchContext.from_build(context), workspace=archive)
        elapsed = time.perf_counter() - begin
        if run.state is not State.SUCCESS:
            raise RuntimeError(f"in-process run failed: {run.reason} {run.steps}")
        return elapsed, run

    def make_hardened_resources(self) -> None:
        self.network = f"bench-{self.token}"
        self.volume = f"bench-{self.token}-workspace"
        label = f"{BENCH_LABEL}={self.token}"
        _docker("network", "create", "--driver", "bridge", "--label", label, self.network)
        _docker("volume", "create", "--label", label, self.volume)

    def hardened(self) -> float:
        plan = build_plan(self.file, BuildContext())
        begin = time.perf_counter()
        for n, step in enumerate(plan.steps, start=1):
            done = subprocess.run(
                hardened_argv(step, self.network, self.volume, self.token),
                capture_output=True,
                text=True,
                check=False,
            )
            ok = done.returncode == 0 and f"step {n}\n" in done.stdout
            _expect(ok, "docker run (hardened)", done)
        return time.perf_counter() - begin


def hardened_argv(step: StepPlan, network: str, volume: str, token: str) -> list[str]:
    """``docker run --rm`` with the container settings the compiler gave ``step``."""
    c = step.container
    argv = ["docker", "run", "--rm", "--label", f"{BENCH_LABEL}={token}"]
    argv += ["--network", network, "--network-alias", c.alias, "--hostname", c.alias]
    argv += ["--log-driver", "none", "--cap-drop", ",".join(c.cap_drop)]
    argv += [f"--cap-add={cap}" for cap in c.cap_add]
    argv += [f"--security-opt={opt}" for opt in c.security_opt]
    argv += ["--pids-limit", str(c.pids_limit), "--memory", str(c.mem_limit)]
    argv += ["--memory-swap", str(c.memswap_limit), "--cpus", str(c.nano_cpus / 1e9)]
    argv += ["--mount", f"type=volume,source={volume},target={c.working_dir}"]
    argv += ["--workdir", c.working_dir]
    argv += [f"--env={k}={v}" for k, v in c.env.items()]
    if c.read_only_rootfs:
        argv.append("--read-only")
    entrypoint = list(c.entrypoint or ())
    argv += ["--entrypoint", entrypoint[0], c.image, *entrypoint[1:], *(c.command or ())]
    return argv


def _docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    _expect(done.returncode == 0, "docker " + " ".join(args[:2]), done)
    return done.stdout


def _expect(ok: bool, what: str, done: subprocess.CompletedProcess[str]) -> None:
    if not ok:
        raise RuntimeError(
            f"{what} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )


# -- statistics and printing -----------------------------------------------------------------


@dataclass
class Samples:
    name: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def min(self) -> float:
        return min(self.values)


def run_rounds(
    variants: dict[str, Callable[[], float]], rounds: int, log: Callable[[str], None]
) -> dict[str, Samples]:
    names = list(variants)
    log("warm-up: " + ", ".join(names))
    for name in names:
        variants[name]()
    samples = {name: Samples(name) for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        parts = []
        for name in order:
            seconds = variants[name]()
            samples[name].values.append(seconds)
            parts.append(f"{name} {seconds:.2f}s")
        log(f"round {r + 1}/{rounds}: " + "; ".join(parts))
    return samples


def print_results(samples: dict[str, Samples], steps: int) -> None:
    raw = samples[RAW]
    print(f"\nResults: {steps} sequential steps, {len(raw.values)} rounds (seconds)\n")
    header = (
        f"| {'variant':<30} | {'total median':>12} | {'total min':>9} | {'per step median':>15} "
        f"| {'per step min':>12} | {'ratio median':>12} | {'ratio min':>9} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for s in samples.values():
        print(
            f"| {s.name:<30} | {s.median:>12.3f} | {s.min:>9.3f} | {s.median / steps:>15.3f} "
            f"| {s.min / steps:>12.3f} | {s.median / raw.median:>11.2f}x | "
            f"{s.min / raw.min:>8.2f}x |"
        )
    print()
    for name in (CLI, INPROC):
        if name not in samples:
            continue
        s = samples[name]
        ratio_med, ratio_min = s.median / raw.median, s.min / raw.min
        paired = statistics.median(b / r for b, r in zip(s.values, raw.values, strict=True))
        verdict = "PASS" if ratio_med <= TARGET_RATIO else "FAIL"
        print(
            f"{verdict}: {name}: {ratio_med:.2f}x raw (median), {ratio_min:.2f}x (min), "
            f"{paired:.2f}x (median of the per-round ratios); "
            f"target <= {TARGET_RATIO}x; overhead {(s.median - raw.median) / steps * 1000:+.0f} ms "
            "per step (median)"
        )
    print(
        f"(the verdict of the issue is the '{CLI}' line: it is what a user waits for; the "
        "in-process line excludes interpreter start-up and imports)"
    )


# -- profiling -------------------------------------------------------------------------------


@dataclass
class Call:
    what: str  # backend method, or "HTTP <METHOD> <path>"
    step: str
    begin: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.begin


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def add(self, what: str, step: str, begin: float) -> None:
        end = time.perf_counter()
        with self._lock:
            self.calls.append(Call(what, step, begin, end))

    @contextlib.contextmanager
    def timed(self, what: str, step: str = "") -> Iterator[None]:
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.add(what, step, begin)


_PATH_RULES = (
    (re.compile(r"^/v[\d.]+"), ""),
    (re.compile(r"^/images/.+/json$"), "/images/{name}/json"),
    (re.compile(r"^/containers/(?!create$|json$)[^/]+"), "/containers/{id}"),
    (re.compile(r"^/networks/(?!create$)[^/]+"), "/networks/{id}"),
    (re.compile(r"^/volumes/(?!create$)[^/]+"), "/volumes/{name}"),
)


def _endpoint(method: str, url: str) -> str:
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    for pattern, replacement in _PATH_RULES:
        path = pattern.sub(replacement, path)
    return f"HTTP {method} {path}"


class TimedDockerBackend(DockerBackend):
    """``DockerBackend`` that records how long each protocol call and each Engine API
    request takes (the request of a streamed attach ends when its headers arrive)."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder
        self._local = threading.local()
        api = self.client.api
        send = api.send

        def timed_send(request: Any, **kwargs: Any) -> Any:
            begin = time.perf_counter()
            try:
                return send(request, **kwargs)
            finally:
                step = getattr(self._local, "step", "")
                recorder.add(_endpoint(request.method, request.url), step, begin)

        api.send = timed_send  # type: ignore[method-assign]

    @contextlib.contextmanager
    def _call(self, what: str, step: str = "") -> Iterator[None]:
        self._local.step = step
        try:
            with self.recorder.timed(what, step):
                yield
        finally:
            self._local.step = ""

    def setup(self, plan: Plan) -> None:
        with self._call("setup"):
            super().setup(plan)

    def ready(self, plan: Plan) -> None:
        if threading.current_thread() is not threading.main_thread():
            super().ready(plan)  # from start() or prepare(): part of their time
            return
        with self._call("ready"):
            super().ready(plan)

    def prepare(self, plan: Plan, step: StepPlan) -> None:
        with self._call("prepare", step.name):
            super().prepare(plan, step)

    def populate_workspace(self, plan: Plan, archive: IO[bytes]) -> None:
        with self._call("populate_workspace"):
            super().populate_workspace(plan, archive)

    def start(self, plan: Plan, step: StepPlan) -> None:
        with self._call("start", step.name):
            super().start(plan, step)

    def output(self, plan: Plan, step: StepPlan) -> Iterator[OutputChunk]:
        with self._call("output", step.name):
            yield from super().output(plan, step)

    def wait(self, plan: Plan, step: StepPlan) -> StepExit:
        with self._call("wait", step.name):
            return super().wait(plan, step)

    def remove(self, plan: Plan, step: StepPlan) -> None:
        with self._call("remove", step.name):
            super().remove(plan, step)

    def destroy(self, plan: Plan) -> None:
        with self._call("destroy"):
            super().destroy(plan)

    def cleanup_stale(self, *, include_live: bool = False) -> CleanupReport:
        with self._call("cleanup_stale"):
            return super().cleanup_stale(include_live=include_live)


def _median_of_runs(argv: list[str], runs: int, **kwargs: Any) -> float:
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True, **kwargs)
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def profile_startup(bench: Bench, runs: int) -> None:
    py = sys.executable
    bare = _median_of_runs([py, "-c", "pass"], runs)
    cli_imports = _median_of_runs([py, "-c", "import bastion.cli.app"], runs)
    all_imports = _median_of_runs(
        [py, "-c", "import bastion.cli.app, bastion.backends.docker"], runs
    )
    version = _median_of_runs([str(bench.bastion), "version"], runs)
    docker_cli = _median_of_runs(["docker", "--version"], runs)
    docker_ping = _median_of_runs(["docker", "version", "--format", "{{.Server.Version}}"], runs)
    print(f"\nStart-up (median of {runs} runs)")
    print(f"  python -c pass                                   {bare * 1000:6.0f} ms")
    print(f"  python -c 'import bastion.cli.app'               {cli_imports * 1000:6.0f} ms")
    print(f"  ... and bastion.backends.docker (docker-py)       {all_imports * 1000:6.0f} ms")
    print(f"  bastion version (console script, typer)          {version * 1000:6.0f} ms")
    print(f"  docker --version (CLI start, no engine call)     {docker_cli * 1000:6.0f} ms")
    print(f"  docker version (CLI start + one engine call)     {docker_ping * 1000:6.0f} ms")

    done = subprocess.run(
        [py, "-X", "importtime", "-c", "import bastion.cli.app, bastion.backends.docker"],
        capture_output=True,
        text=True,
        check=True,
    )
    self_time: dict[str, int] = {}
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \| \s*(\S+)", line)
        if m:
            top = m.group(2).split(".")[0]
            self_time[top] = self_time.get(top, 0) + int(m.group(1))
    total = sum(self_time.values())
    heaviest = sorted(self_time.items(), key=lambda kv: -kv[1])[:10]
    print(
        f"  import time by top-level package (-X importtime, self time, one run; total "
        f"{total / 1000:.0f} ms):"
    )
    print("    " + ", ".join(f"{name} {micros / 1000:.0f}" for name, micros in heaviest))

    nothing = _median_of_runs([str(bench.bastion), "exec", str(bench.skip_file)], runs)
    print(
        f"  bastion exec of a pipeline whose trigger does not match (start-up, imports, "
        f"git probes, parse; no Docker)   {nothing * 1000:.0f} ms"
    )


def profile_inproc(bench: Bench, runs: int) -> None:
    """Instrumented in-process runs: per backend call, per API request, critical path."""
    per_run: list[dict[str, float]] = []
    by_call: dict[str, list[float]] = {}
    http: dict[str, list[float]] = {}
    critical: list[dict[str, float]] = []
    for _ in range(runs):
        recorder = Recorder()
        outer = Recorder()
        begin = time.perf_counter()
        with outer.timed("prepare"):
            context = exec_context(bench.directory)
            plan = build_plan(bench.file, context)
            bench.run_ids.append(plan.run_id)
            archive = workspace_archive(bench.directory)
        with outer.timed("connect (DockerBackend + client)"):
            backend = TimedDockerBackend(recorder)
        backend.cleanup_stale()
        executor = Executor(backend, SecretMasker(()), NullReporter())
        run_begin = time.perf_counter()
        run = executor.run(plan, MatchContext.from_build(context), workspace=archive)
        end = time.perf_counter()
        if run.state is not State.SUCCESS:
            raise RuntimeError(f"instrumented run failed: {run.reason}")
        totals: dict[str, float] = {"total": end - begin}
        for c in outer.calls:
            totals[c.what] = c.seconds
        for c in recorder.calls:
            if c.what.startswith("HTTP"):
                http.setdefault(c.what, []).append(c.seconds)
            else:
                by_call.setdefault(c.what, []).append(c.seconds)
        per_run.append(totals)
        critical.append(_critical_path(recorder.calls, plan, run_begin, end))

    print(f"\nIn-process, instrumented (median over {runs} runs; total includes instrumentation)")
    for key in per_run[0]:
        print(f"  {key:<40} {statistics.median(r[key] for r in per_run) * 1000:7.0f} ms")

    print("\n  Critical path of Executor.run (median ms; 'remove' of step N overlaps step N+1):")
    for key in critical[0]:
        print(f"    {key:<52} {statistics.median(c[key] for c in critical) * 1000:7.0f}")

    print(f"\n  Backend calls (all {runs} runs): count, mean ms, median ms")
    for what, values in by_call.items():
        print(
            f"    {what:<40} {len(values):4d} {statistics.mean(values) * 1000:8.1f} "
            f"{statistics.median(values) * 1000:8.1f}"
        )
    print(f"\n  Engine API requests (all {runs} runs): count per run, mean ms, total ms per run")
    for what, values in sorted(http.items(), key=lambda kv: -sum(kv[1])):
        print(
            f"    {what:<48} {len(values) / runs:5.1f} {statistics.mean(values) * 1000:8.1f} "
            f"{sum(values) / runs * 1000:8.0f}"
        )


def _critical_path(calls: list[Call], plan: Plan, begin: float, end: float) -> dict[str, float]:
    def find(what: str, step: str = "") -> Call:
        return next(c for c in calls if c.what == what and c.step == step)

    names = [s.name for s in plan.steps]
    setup = find("setup")
    populate = find("populate_workspace")
    # The executor's ready() (start and prepare call it too, from other threads: not timed);
    # a backend without the optional method has none.
    ready = next((c for c in calls if c.what == "ready"), populate)
    path: dict[str, float] = {
        "setup (volume; the network is created meanwhile)": setup.seconds,
        "populate_workspace (helper container + put_archive)": populate.seconds,
        "ready (waits for the network)": ready.seconds if ready is not populate else 0.0,
        "ready end -> first start (threads)": find("start", names[0]).begin - ready.end,
    }
    starts, outputs, waits, gaps, removes = [], [], [], [], []
    for i, name in enumerate(names):
        start, output, wait = find("start", name), find("output", name), find("wait", name)
        starts.append(start.seconds)
        outputs.append(output.end - start.end)  # from started until the stream ended
        waits.append(wait.end - output.end)
        removes.append(find("remove", name).seconds)
        if i + 1 < len(names):
            gaps.append(find("start", names[i + 1]).begin - wait.end)
    n = len(names)
    path[f"steps: start (create + attach too if not prepared ahead) x{n}"] = sum(starts)
    path[f"steps: output until exit x{n}"] = sum(outputs)
    path[f"steps: wait + reload + watcher stop x{n}"] = sum(waits)
    path[f"steps: gap wait end -> next start (scheduling) x{n - 1}"] = sum(gaps)
    last_wait = find("wait", names[-1])
    destroy = find("destroy")
    path["last step: wait end -> destroy (remove, joins)"] = destroy.begin - last_wait.end
    path["destroy (list, inspect, remove net + volume)"] = destroy.seconds
    path["sum of 'remove' (overlapped, not on the path)"] = sum(removes)
    path["Executor.run total"] = end - begin
    return path


def profile_docker(bench: Bench, reps: int) -> None:
    """What one ``docker run --rm`` costs with parts of Bastion's container settings."""
    plan = build_plan(bench.file, BuildContext())
    plain = [*RAW_ARGV, f"{BENCH_LABEL}={bench.token}"]
    tail = [IMAGE, "sh", "-c", "echo step 1"]
    variants = {
        "default bridge (= raw)": [*plain, *tail],
        "--network none": [*plain, "--network", "none", *tail],
        "run's own bridge network + alias": [
            *plain,
            *("--network", bench.network, "--network-alias", "step-1", "--hostname", "step-1"),
            *tail,
        ],
        "every hardening flag (= raw hardened)": hardened_argv(
            plan.steps[0], bench.network, bench.volume, bench.token
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(reps):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            begin = time.perf_counter()
            subprocess.run(variants[name], capture_output=True, check=True)
            times[name].append(time.perf_counter() - begin)
    print(f"\nOne docker run --rm, by container settings ({reps} runs each, interleaved)")
    for name, values in times.items():
        print(
            f"  {name:<40} median {statistics.median(values) * 1000:5.0f} ms, "
            f"min {min(values) * 1000:5.0f} ms"
        )


def profile_poll(bench: Bench, runs: int) -> None:
    """Wall time and scheduling gaps (a step finished -> the next one launched, from the
    executor's own timestamps) with the default poll interval and a ten times shorter one."""
    print(f"\nExecutor poll_interval sensitivity (in-process, {runs} runs each, interleaved)")
    intervals = (0.1, 0.01)
    times: dict[float, list[float]] = {i: [] for i in intervals}
    gaps: dict[float, list[float]] = {i: [] for i in intervals}
    for r in range(runs):
        for interval in intervals if r % 2 == 0 else intervals[::-1]:
            seconds, run = bench.inproc(poll_interval=interval)
            times[interval].append(seconds)
            gaps[interval].append(_scheduling_gaps(run))
    for interval in intervals:
        values = times[interval]
        print(
            f"  poll_interval={interval:<5} total median {statistics.median(values):.3f} s, "
            f"min {min(values):.3f} s; scheduling gaps, sum over the run: median "
            f"{statistics.median(gaps[interval]) * 1000:.1f} ms"
        )


def _scheduling_gaps(run: RunResult) -> float:
    total = 0.0
    for before, after in itertools.pairwise(run.steps):
        if before.finished is not None and after.started is not None:
            total += after.started - before.finished
    return total


# -- leftovers -------------------------------------------------------------------------------


def leftovers(bench: Bench) -> list[str]:
    """What this script or its runs left behind (other people's runs are not counted)."""
    found: list[str] = []
    owner_pids = {str(p) for p in bench.cli_pids} | {str(os.getpid())}
    host = os.uname().nodename
    for kind in ("container", "network", "volume"):
        listing = ["ps", "-a"] if kind == "container" else [kind, "ls"]
        ids = _docker(*listing, "-q", "--filter", f"label={LABEL_MANAGED}").split()
        ids += _docker(*listing, "-q", "--filter", f"label={BENCH_LABEL}={bench.token}").split()
        for ident in sorted(set(ids)):
            fmt = "{{json .Config.Labels}}" if kind == "container" else "{{json .Labels}}"
            done = subprocess.run(
                ["docker", kind, "inspect", "--format", fmt, ident],
                capture_output=True,
                text=True,
                check=False,
            )
            labels = done.stdout
            ours = (
                f'"{BENCH_LABEL}":"{bench.token}"' in labels
                or any(f'"{LABEL_RUN}":"{run_id}"' in labels for run_id in bench.run_ids)
                or (
                    f'"{LABEL_OWNER_HOST}":"{host}"' in labels
                    and any(f'"{LABEL_OWNER_PID}":"{pid}"' in labels for pid in owner_pids)
                )
            )
            if ours:
                found.append(f"{kind} {ident}")
    return found


def remove_hardened_resources(bench: Bench) -> None:
    if bench.network:
        subprocess.run(["docker", "network", "rm", bench.network], capture_output=True, check=False)
    if bench.volume:
        subprocess.run(["docker", "volume", "rm", bench.volume], capture_output=True, check=False)


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=10, help="steps in the pipeline (10)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per variant (5)")
    parser.add_argument(
        "--hardened",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time raw docker run with Bastion's hardening flags (diagnostic)",
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="explain where the time goes (start-up, instrumented run, poll interval)",
    )
    parser.add_argument("--profile-runs", type=int, default=3, help="runs per profile item (3)")
    args = parser.parse_args(argv)

    bastion = Path(sys.executable).with_name("bastion")
    if not bastion.exists():
        print(f"no bastion console script next to {sys.executable}", file=sys.stderr)
        return 1
    if shutil.which("docker") is None:
        print("no docker CLI on PATH", file=sys.stderr)
        return 1

    def log(text: str) -> None:
        print(text, flush=True)

    print(f"exec overhead: {args.steps} steps, {args.rounds} rounds, image {IMAGE}")
    print(
        f"host {socket.gethostname()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"docker {_docker('version', '--format', '{{.Server.Version}}').strip()}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    with tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp:
        directory = Path(tmp) / "project"
        skip = Path(tmp) / "skip"
        directory.mkdir()
        skip.mkdir()
        bench = Bench(directory, write_project(directory, args.steps), args.steps, bastion)
        bench.skip_file = write_project(skip, 1, trigger="trigger: {event: [tag]}")
        status = 0
        try:
            variants: dict[str, Callable[[], float]] = {
                RAW: bench.raw,
                CLI: bench.cli,
                INPROC: lambda: bench.inproc()[0],
            }
            if args.hardened or args.profile:
                bench.make_hardened_resources()
            if args.hardened:
                variants[HARDENED] = bench.hardened
            samples = run_rounds(variants, args.rounds, log)
            print_results(samples, args.steps)
            if args.profile:
                profile_startup(bench, args.profile_runs * 3)
                profile_inproc(bench, args.profile_runs)
                profile_docker(bench, args.profile_runs * 4)
                profile_poll(bench, args.profile_runs)
        finally:
            remove_hardened_resources(bench)
            left = leftovers(bench)
            if left:
                print(f"\nLEFT BEHIND: {', '.join(left)}", file=sys.stderr)
                status = 1
            else:
                print("\nnothing left behind (containers, networks, volumes of this script's runs)")
            managed = _docker("ps", "-a", "-q", "--filter", f"label={LABEL_MANAGED}").split()
            print(
                f"docker ps -a --filter label={LABEL_MANAGED}: {len(managed)} container(s)"
                + (" (other users' runs; none is ours)" if managed and not left else "")
            )
        print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return status


if __name__ == "__main__":
    sys.exit(main())
