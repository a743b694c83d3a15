"""Config parsing: ``bastion.spec.parse`` with libyaml against pure-Python PyYAML.

Every stage parses its repository's whole ``.drone.yml``, on the server (secret names) and
on the runner (compile), so this is CPU spent per stage. The script parses each file
``--rounds`` times with each YAML path of ``bastion.spec.loader`` (the C path, libyaml, and
the pure-Python path that ``BASTION_YAML_PURE=1`` forces) and prints the median CPU time
per ``parse()`` (``time.thread_time``: on a shared machine wall time grows with the load)
and the ratio C / pure, measured in the same run. The two paths run interleaved, one call
each in turn, so that the state of the machine hits both.

The files (``drone_yml``; the positions test of ``tests/unit/spec`` parses them too):

* **10 pipelines**: what a real monorepo's file looks like: each pipeline with a platform, a
  trigger, a service, four steps with commands, ``from_secret`` variables, ``when``
  conditions, ``depends_on`` between steps and pipelines, and the first step's
  settings merged into the next two (``<<: *install``);
* **1 pipeline**: the first of those;
* **10 pipelines with a !**: the same with one ``if ! [ ... ]`` in a command: a ``!`` or a
  ``?`` anywhere makes the C path also scan the tokens (see ``bastion.spec.loader._load``);
* **scheduler**: the file of ``bench/scheduler_throughput.py`` (10 tiny one-step pipelines).

Then, for the C path, where the time of ``parse()`` goes: YAML (libyaml's compose, and its
token scan when the loader needs one), the conversion of the nodes to values with positions
and the limits (``_Converter``), pydantic's ``model_validate`` of each document, and the rest
of ``parse()`` (the unknown-field walk and the checks of ``bastion.spec.parse``).
Every parse is also checked to give the same result on both paths, with no diagnostic.

Run::

    .venv/bin/python bench/spec_parse.py --rounds 200
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import yaml

from bastion.spec import loader
from bastion.spec.parse import _MODELS, parse

_PURE = "BASTION_YAML_PURE"


def drone_yml(pipelines: int) -> str:
    """A realistic ``.drone.yml`` with ``pipelines`` pipelines (see the module docstring)."""
    docs = []
    for n in range(1, pipelines + 1):
        depends = f"depends_on: [p{n - 1:02d}]\n" if n > 1 else ""
        docs.append(
            f"""kind: pipeline
type: docker
name: p{n:02d}
{depends}
platform:
  os: linux
  arch: amd64

trigger:
  branch: [main, "release/*"]
  event:
    include: [push, pull_request, tag]

services:
- name: db{n}
  image: bastion/busybox:latest
  commands: [exec httpd -f -p 8080]

steps:
- &install
  name: install
  image: bastion/python:3.11
  pull: if-not-exists
  environment:
    PIP_CACHE_DIR: /drone/src/.cache/pip
    LOG_LEVEL: debug
  commands:
  - python -m venv .venv
  - .venv/bin/pip install -e ".[test]"
- <<: *install
  name: lint
  depends_on: [install]
  commands:
  - .venv/bin/ruff check src tests
  - .venv/bin/mypy src
- <<: *install
  name: test
  depends_on: [install]
  environment:
    DATABASE_URL: "postgres://db{n}:5432/test"
    API_TOKEN:
      from_secret: api_token
  commands:
  - .venv/bin/pytest -q --maxfail=1 tests/unit
  - |
    if [ "$DRONE_BUILD_EVENT" = "push" ]; then
      .venv/bin/pytest -q tests/integration
    fi
- name: publish
  image: bastion/busybox:latest
  depends_on: [lint, test]
  environment:
    REGISTRY_PASSWORD:
      from_secret: registry_password
  commands:
  - echo "publishing build $DRONE_BUILD_NUMBER of $DRONE_COMMIT_SHA"
  when:
    branch: [main]
    event: [push, tag]
    status: [success]
"""
        )
    return "---\n".join(docs)


def scheduler_yml(pipelines: int = 10) -> str:
    """The file ``bench/scheduler_throughput.py`` pushes (same text, rebuilt here)."""
    docs = []
    for n in range(1, pipelines + 1):
        docs.append(
            f"kind: pipeline\ntype: docker\nname: p{n:03d}\nclone:\n  disable: true\n"
            "steps:\n- name: fake\n  image: bastion/busybox:latest\n  environment:\n"
            '    BASTION_FAKE_SLEEP: "0"\n  commands:\n  - "true"\n'
        )
    return "---\n".join(docs)


def _use_pure(pure: bool) -> None:
    if pure:
        os.environ[_PURE] = "1"
    else:
        os.environ.pop(_PURE, None)


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _timed(fn: Callable[[], object]) -> float:
    """CPU seconds of this thread spent in ``fn()``.

    CPU time, not wall time: on a shared machine a longer call is preempted more often, so
    wall time grows faster than the work (and the C/pure ratio would depend on the load).
    """
    start = time.thread_time()
    fn()
    return time.thread_time() - start


def _compare(text: str, rounds: int) -> tuple[float, float]:
    """Median CPU ms per ``parse(text)`` on the C path and on the pure path, interleaved."""
    samples: dict[bool, list[float]] = {True: [], False: []}
    for i in range(rounds + 3):
        for pure in (False, True) if i % 2 else (True, False):
            _use_pure(pure)
            spent = _timed(lambda: parse(text))
            if i >= 3:  # the first rounds warm caches (pydantic, regexes) for both paths
                samples[pure].append(spent)
    _use_pure(False)
    return _median_ms(samples[False]), _median_ms(samples[True])


def _breakdown(text: str, rounds: int) -> dict[str, float]:
    """Median CPU ms of each part of ``parse(text)`` on the C path."""
    docs, _ = loader.load_documents(text)
    models = [(_MODELS[d.value["kind"]], d.value) for d in docs]

    def validate() -> None:
        for model, value in models:
            model.model_validate(value)

    calls: dict[str, Callable[[], object]] = {
        "compose": lambda: list(yaml.compose_all(text, Loader=yaml.CSafeLoader)),
        "scan": lambda: list(yaml.scan(text, Loader=yaml.CSafeLoader)),
        "load": lambda: loader.load_documents(text),
        "validate": validate,
        "parse": lambda: parse(text),
    }
    parts: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(rounds + 3):
        for name, fn in calls.items():
            spent = _timed(fn)
            if i >= 3:
                parts[name].append(spent)
    ms = {name: _median_ms(samples) for name, samples in parts.items()}
    scanned = "!" in text or "?" in text  # as bastion.spec.loader._load decides
    yaml_ms = ms["compose"] + (ms["scan"] if scanned else 0.0)
    return {
        "YAML: libyaml compose" + (" + token scan" if scanned else ""): yaml_ms,
        "conversion to values + positions, limits": ms["load"] - yaml_ms,
        "pydantic model_validate": ms["validate"],
        "the rest of parse() (unknown fields, graphs)": ms["parse"] - ms["load"] - ms["validate"],
        "parse() total": ms["parse"],
        "(token scan, when the text has a ! or a ?)": ms["scan"],
    }


def _check_same(name: str, text: str) -> None:
    results = []
    for pure in (False, True):
        _use_pure(pure)
        docs, problems = loader.load_documents(text)
        result = parse(text)
        if problems or result.diagnostics:
            sys.exit(f"{name}: unexpected diagnostics {problems or result.diagnostics}")
        results.append([(d.value, d.positions) for d in docs])
    _use_pure(False)
    if results[0] != results[1]:
        sys.exit(f"{name}: the C and the pure-Python path disagree")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="calls per path and file")
    args = parser.parse_args()
    if not loader._WITH_LIBYAML:
        sys.exit("PyYAML was built without libyaml here: there is no C path to measure")

    files = {
        "10 pipelines": drone_yml(10),
        "1 pipeline": drone_yml(1),
        "10 pipelines with a !": drone_yml(10).replace("if [", "if ! [", 1),
        "scheduler (10 tiny)": scheduler_yml(10),
    }
    print(
        f"spec parse: {args.rounds} rounds, Python {platform.python_version()}, "
        f"PyYAML {yaml.__version__} (libyaml {yaml._yaml.get_version_string()}), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("median CPU time per parse():")
    print(f"{'file':22} {'bytes':>6} {'pure ms':>8} {'C ms':>7} {'C/pure':>7} {'speed-up':>8}")
    for name, text in files.items():
        _check_same(name, text)
        fast, pure = _compare(text, args.rounds)
        print(
            f"{name:22} {len(text):6d} {pure:8.2f} {fast:7.2f} {fast / pure:7.2f} "
            f"{pure / fast:7.1f}x"
        )
    for name in ("10 pipelines", "1 pipeline"):
        print(f"\nwhere parse() spends its CPU time on the C path, {name}:")
        parts = _breakdown(files[name], args.rounds)
        total = parts["parse() total"]
        for part, ms in parts.items():
            print(f"  {part:46} {ms:6.2f} ms {100 * ms / total:5.0f} %")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
