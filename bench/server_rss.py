"""Idle resident memory of ``bastion server`` (issue 3).

The target: an idle server (SQLite, ``--dev``) uses at most 120 MB of resident memory.

The server is started as a user starts it, ``bastion server --dev --host 127.0.0.1 --port P
--data-dir TMP`` (a subprocess, SQLite in a temporary data directory). Once ``/healthz``
answers, one authenticated API call is made (``GET /api/user``), then the script waits
``--settle`` seconds and reads ``VmRSS`` from ``/proc/<pid>/status`` of the server and of
every process under it (there are none today: the server runs no helper process while idle;
they would count if there were). It reads it ``--samples`` times, 0.5 s apart, and reports
the largest value; ``VmHWM`` (the peak since start) and the split into anonymous memory
(``RssAnon``: the Python heap, objects, thread stacks) and file-backed pages (``RssFile``:
the interpreter and the shared libraries, shared with every other process using them) are
shown too.

Then, as a diagnostic, ``--requests`` (200) more API calls of several kinds (repositories,
builds, users, runners, the OpenAPI document) and the same measurement again, to see whether
the first requests grow the heap.

Baselines, measured in the same run with the same interpreter:

* ``python -c "import time; time.sleep(...)"``: the bare interpreter;
* ``python -c "import fastapi, uvicorn, sqlalchemy; ..."``: the server's main libraries,
  imported and nothing else (what any FastAPI + SQLAlchemy service starts from);
* ``python -c "import bastion.server.app; ..."`` (a diagnostic): every module the server
  imports, without starting it.

MB are 10^6 bytes, MiB 2^20 bytes; the verdict uses MB (the stricter reading of the target).
It exits 0 whether or not the target is met; 1 only if something fails to run. Run::

    .venv/bin/python bench/server_rss.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

TARGET_MB = 120.0
MB = 1_000_000
MIB = 1 << 20


@dataclass(frozen=True)
class Memory:
    """Resident memory of a process tree, in bytes."""

    rss: int
    anon: int
    file: int
    hwm: int
    processes: int

    def row(self, name: str, base: Memory | None) -> str:
        ratio = f"{self.rss / base.rss:.2f}x" if base is not None else ""
        return (
            f"| {name} | {self.rss / MB:.1f} | {self.rss / MIB:.1f} | {self.anon / MB:.1f} | "
            f"{self.file / MB:.1f} | {self.hwm / MB:.1f} | {self.processes} | {ratio} |"
        )


def _status(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            values[key] = int(parts[0]) * 1024
    return values


def descendants(pid: int) -> list[int]:
    """``pid`` and every process under it (from ``/proc/<pid>/task/*/children``)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                found += descendants(int(child))
    return found


def memory(pid: int) -> Memory:
    pids = descendants(pid)
    totals = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "VmHWM": 0}
    for p in pids:
        status = _status(p)
        for key in totals:
            totals[key] += status.get(key, 0)
    return Memory(totals["VmRSS"], totals["RssAnon"], totals["RssFile"], totals["VmHWM"], len(pids))


def settled(pid: int, samples: int) -> Memory:
    """The largest of ``samples`` readings, 0.5 s apart."""
    readings = []
    for n in range(samples):
        if n:
            time.sleep(0.5)
        readings.append(memory(pid))
    return max(readings, key=lambda m: m.rss)


def clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BASTION_", "DRONE_"))
        and k.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    }


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM to this PID, then SIGKILL if it does not stop within 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


def baseline(code: str, settle: float, samples: int) -> Memory:
    """RSS of ``python -c code`` once it has run ``code`` and sleeps."""
    script = f"{code}\nimport sys, time\nprint('ready', flush=True)\ntime.sleep(600)\n"
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
    )
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"python -c {code!r} failed")
        time.sleep(settle)
        return settled(process.pid, samples)
    finally:
        stop(process)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure_server(
    tmp: Path, settle: float, samples: int, requests: int, run: int = 1
) -> tuple[Memory, Memory, float]:
    """(idle after one call, after ``requests`` more calls, seconds to /healthz). ``run`` 2
    starts the server again on the data directory of run 1: a restart, with nothing to
    migrate."""
    bastion = Path(sys.executable).with_name("bastion")
    port = free_port()
    data = tmp / "data"
    log = tmp / "server.log"
    argv = [str(bastion), "server", "--dev", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*argv, "--data-dir", str(data)],
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    begin = time.monotonic()
    try:
        with httpx.Client(base_url=url, timeout=5, trust_env=False) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited:\n{log.read_text()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/healthz").status_code == 200:
                        break
                if time.monotonic() - begin > 60:
                    raise RuntimeError("the server did not answer within 60 s")
                time.sleep(0.05)
            ready = time.monotonic() - begin
            token = (data / "admin.token").read_text(encoding="utf-8").strip()
            client.headers["Authorization"] = f"Bearer {token}"
            client.get("/api/user").raise_for_status()
            time.sleep(settle)
            idle = settled(process.pid, samples)

            repo = f"rss{run}"
            client.post("/api/repos", json={"owner": "bench", "name": repo}).raise_for_status()
            client.post("/api/runners", json={"name": f"bench-rss{run}"}).raise_for_status()
            paths = [
                "/api/user",
                "/api/repos",
                f"/api/repos/bench/{repo}",
                f"/api/repos/bench/{repo}/builds",
                "/api/users",
                "/api/runners",
                "/version",
                "/openapi.json",
            ]
            for n in range(requests):
                response = client.get(paths[n % len(paths)])
                if response.status_code >= 400:
                    raise RuntimeError(f"GET {paths[n % len(paths)]}: {response.status_code}")
            time.sleep(settle)
            busy = settled(process.pid, samples)
        return idle, busy, ready
    finally:
        code = stop(process)
        # uvicorn re-raises the SIGTERM it handled once it has shut down: -15 is a clean stop.
        if code not in (0, -signal.SIGTERM):
            print(f"the server exited {code}:\n{log.read_text()[-3000:]}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--settle", type=float, default=5.0, help="seconds idle (5)")
    parser.add_argument("--samples", type=int, default=5, help="readings 0.5 s apart (5)")
    parser.add_argument("--requests", type=int, default=200, help="API calls after (200)")
    args = parser.parse_args(argv)
    print(
        f"server RSS: settle {args.settle:g} s, {args.samples} samples; host "
        f"{socket.gethostname()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    try:
        bare = baseline("pass", args.settle, args.samples)
        libs = baseline("import fastapi, uvicorn, sqlalchemy", args.settle, args.samples)
        imports = baseline("import bastion.server.app", args.settle, args.samples)
        with tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp:
            idle, busy, ready = measure_server(Path(tmp), args.settle, args.samples, args.requests)
            again, _, _ = measure_server(Path(tmp), args.settle, args.samples, 1, run=2)
    except Exception as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(f"\nthe server answered /healthz {ready:.2f} s after it was started\n")
    print(
        "| process | RSS MB | RSS MiB | anon MB | file MB | peak (VmHWM) MB | processes | x bare |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(bare.row("python, bare", None))
    print(libs.row("python + fastapi, uvicorn, sqlalchemy", bare))
    print(imports.row("python + bastion.server.app imported", bare))
    print(idle.row("bastion server, idle (after 1 API call)", bare))
    print(busy.row(f"bastion server, after {args.requests} more API calls", bare))
    print(again.row("bastion server restarted (nothing to migrate), idle", bare))
    print(
        f"\nserver idle - libraries baseline: {(idle.rss - libs.rss) / MB:+.1f} MB; "
        f"server idle - its imports: {(idle.rss - imports.rss) / MB:+.1f} MB; "
        f"growth over {args.requests} calls: {(busy.rss - idle.rss) / MB:+.1f} MB"
    )
    verdict = "PASS" if idle.rss <= TARGET_MB * MB else "FAIL"
    print(
        f"{verdict}: idle server RSS {idle.rss / MB:.1f} MB ({idle.rss / MIB:.1f} MiB, "
        f"{idle.processes} process(es)), {idle.rss / libs.rss:.2f}x the libraries baseline; "
        f"target <= {TARGET_MB:.0f} MB"
    )
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
