"""Step logs: masked again on arrival, stored idempotently, limited in size, tailed live.

Runners mask their output before sending it; the server masks every line again, with a
:class:`~bastion.engine.masking.SecretMasker` of the secrets it handed to that stage (clone
password, secrets), before anything is written. A runner that failed to mask (a bug, or a
compromised runner sending someone else's secret is not in scope: it only has its own) still
does not get a secret into storage. The masker's credential detector runs here too, line by
line (a private key block that starts on a line masks the following lines until its END):
each step keeps a :class:`~bastion.engine.masking.MaskingStream` fed its lines in order.

Detected credentials are audited: a line holding a detection marker, put there by the
runner's masker (the server never sees the credential) or by the server's own, raises one
``credential.detected`` event per step and kind (``detail={"kind": ...}``, never a value),
through the ``on_credential`` callback (:func:`credential_auditor` in production). "Once" is
per server process and step state kept in memory (the last ``_CACHE_STEPS`` steps): a
restart, or a step evicted from the cache, may record a kind again. A step that prints a
marker itself costs an event per kind, no more.

Storage backends (``BASTION_LOG_STORE``):

* ``file`` (default): ``<data_dir>/logs/<build id>/<stage number>/<step number>.log``, one
  JSON object ``{"n": line number, "t": seconds since the step started, "text": ...}`` per
  line. A partial last line left by a crash is cut off when the file is next opened. Used by
  one server process (several servers need the database backend or a shared volume).
* ``database``: ``store.append_log_lines`` (idempotent by line number in the database).

Idempotent by line number: a runner resends whatever was not acknowledged, and a line number
stored already is skipped. Each step may store ``log_limit_bytes`` of text; the first line
past the limit is replaced by ONE marker line (:data:`TRUNCATION_MARKER`) and every later
line is dropped — the step itself keeps running.

Live tails wait on :class:`~bastion.server.services.signals.Wakeups` keyed by stage id and
re-read the store, so they also see lines written by another server process (database
backend) within the re-read interval.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bastion.engine.masking import MaskingStream, SecretMasker, credential_kinds_in
from bastion.rpc.messages import LogLine
from bastion.server.services.audit import AuditLog
from bastion.server.services.signals import Wakeups
from bastion.store.repository import Store
from bastion.store.types import Stage, Step

log = logging.getLogger("bastion.server")

TRUNCATION_PREFIX = "[bastion] log truncated:"


def truncation_marker(limit: int) -> str:
    return f"{TRUNCATION_PREFIX} this step printed more than {limit} bytes; the step kept running"


StoredLine = tuple[int, float, str]  # (n, t, text)

# Called once per step and detected credential kind: (stage, step, kind).
CredentialCallback = Callable[[Stage, Step, str], None]

CREDENTIAL_EVENT = "credential.detected"


def credential_auditor(store: Store, audit: AuditLog) -> CredentialCallback:
    """The production ``on_credential``: an audit event naming where, never what."""

    def record(stage: Stage, step: Step, kind: str) -> None:
        repo = store.get_repo_by_id(stage.repo_id)
        build = store.get_build_by_id(stage.build_id)
        # Lines may come before the step's first report (its name then is a placeholder,
        # "step N"): read it again, and name the step by number too.
        current = store.get_step(stage.id, step.number) or step
        audit.record(
            CREDENTIAL_EVENT,
            repo=repo.slug if repo is not None else "",
            build=build.number if build is not None else None,
            stage=stage.number,
            step=current.name,
            runner=stage.machine,
            detail={"kind": kind, "step_number": step.number},
        )

    return record


class LogBackend(Protocol):
    def read(self, stage: Stage, step: Step, after: int = -1) -> list[StoredLine]: ...

    def write(self, stage: Stage, step: Step, lines: Sequence[StoredLine]) -> None:
        """Append lines whose numbers are not stored yet (the caller checked)."""
        ...


class FileLogBackend:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, stage: Stage, step: Step) -> Path:
        return self.root / str(stage.build_id) / str(stage.number) / f"{step.number}.log"

    def read(self, stage: Stage, step: Step, after: int = -1) -> list[StoredLine]:
        path = self.path(stage, step)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        out: list[StoredLine] = []
        for raw in data.split(b"\n"):
            if not raw:
                continue
            try:
                item = json.loads(raw)
                n, t, text = int(item["n"]), float(item["t"]), str(item["text"])
            except (ValueError, KeyError, TypeError):
                continue  # a partial line left by a crash
            if n > after:
                out.append((n, t, text))
        out.sort(key=lambda line: line[0])
        return out

    def write(self, stage: Stage, step: Step, lines: Sequence[StoredLine]) -> None:
        if not lines:
            return
        path = self.path(stage, step)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _cut_partial_line(path)
        payload = "".join(
            json.dumps({"n": n, "t": round(t, 3), "text": text}, ensure_ascii=False) + "\n"
            for n, t, text in lines
        )
        with path.open("a", encoding="utf-8") as fh:
            fh.write(payload)


def _cut_partial_line(path: Path) -> None:
    """Drop an unterminated last line (a crash mid-write) so the next line starts clean."""
    try:
        with path.open("rb+") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            fh.seek(0)
            data = fh.read()
            fh.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        return


class DatabaseLogBackend:
    def __init__(self, store: Store) -> None:
        self.store = store

    def read(self, stage: Stage, step: Step, after: int = -1) -> list[StoredLine]:
        return self.store.read_log_lines(step.id, after=after)

    def write(self, stage: Stage, step: Step, lines: Sequence[StoredLine]) -> None:
        if lines:
            self.store.append_log_lines(step.id, lines)


@dataclass
class _StepState:
    """What is stored of one step: line numbers, bytes, whether it was truncated."""

    numbers: set[int] = field(default_factory=set)
    size: int = 0
    truncated: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Masks the step's lines in order (a key block goes on over lines); made on first use.
    masking: MaskingStream | None = None
    detected: set[str] = field(default_factory=set)  # credential kinds already audited


_CACHE_STEPS = 1024


class LogService:
    """Appends and reads step logs; see the module docstring."""

    def __init__(
        self,
        backend: LogBackend,
        *,
        limit_bytes: int,
        wakeups: Wakeups,
        masker_for: Callable[[Stage], SecretMasker],
        on_credential: CredentialCallback | None = None,
    ) -> None:
        self.backend = backend
        self.limit = limit_bytes
        self.wakeups = wakeups
        self._masker_for = masker_for
        self._on_credential = on_credential
        self._states: OrderedDict[int, _StepState] = OrderedDict()
        self._states_lock = threading.Lock()

    def _state(self, stage: Stage, step: Step) -> _StepState:
        with self._states_lock:
            state = self._states.get(step.id)
            if state is not None:
                self._states.move_to_end(step.id)
                return state
            state = _StepState()
            for n, _t, text in self.backend.read(stage, step):
                state.numbers.add(n)
                state.size += len(text.encode("utf-8"))
                if text.startswith(TRUNCATION_PREFIX):
                    state.truncated = True
            self._states[step.id] = state
            while len(self._states) > _CACHE_STEPS:
                self._states.popitem(last=False)
            return state

    def append(self, stage: Stage, step: Step, lines: Sequence[LogLine]) -> int:
        """Mask and store the new lines of ``step``; returns how many were stored."""
        if not lines:
            return 0
        masker = self._masker_for(stage)
        state = self._state(stage, step)
        new: list[StoredLine] = []
        kinds: set[str] = set()
        with state.lock:
            if state.masking is None:
                state.masking = masker.stream()
            numbers, size, truncated = set(), state.size, state.truncated
            for line in sorted(lines, key=lambda item: item.n):
                if line.n in state.numbers or line.n in numbers or truncated:
                    continue
                text = state.masking.line(line.text)
                # The runner's markers (also one a declared secret masked part of), and
                # what the server's own masker detected.
                kinds |= credential_kinds_in(line.text) | credential_kinds_in(text)
                line_size = len(text.encode("utf-8"))
                if size + line_size > self.limit:
                    text = truncation_marker(self.limit)
                    truncated = True
                    log.info(
                        "log of stage %d step %d truncated at %d bytes",
                        stage.id,
                        step.number,
                        self.limit,
                    )
                else:
                    size += line_size
                numbers.add(line.n)
                new.append((line.n, line.t, text))
            # Written first, remembered after: a failed write leaves the lines unacknowledged,
            # and the runner's retry stores them.
            self.backend.write(stage, step, new)
            state.numbers |= numbers
            state.size, state.truncated = size, truncated
            kinds -= state.detected
            state.detected |= kinds
        if new:
            self.wakeups.notify(stage.id)
        if self._on_credential is not None:
            for kind in sorted(kinds):
                self._on_credential(stage, step, kind)
        return len(new)

    def read(self, stage: Stage, step: Step, after: int = -1) -> list[StoredLine]:
        return self.backend.read(stage, step, after)
