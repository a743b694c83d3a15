"""Run one leased stage from start to ``complete``; every failure becomes a stage error.

Order of work, so that nothing starts unless it may::

    heartbeats start ─ details (sent with the lease, else asked for) ─ masker (stage
      secrets + clone password) ─ parse .drone.yml (cached by digest: ``manifests``)
      ─ find the pipeline ─ compile with the repo's trust and the runner's hardening
        (policy checked again here: a refusal ends the stage before any container)
      ─ announce the steps ─ source on the host ─ workspace tar ─ Executor on the backend
      ─ flush step updates and logs ─ complete ─ heartbeats stop

Whatever happens (a bad config, a refused pipeline, a clone failure, an engine error, a bug
in the runner), the stage is completed with a state and a message, unless the lease is no
longer ours, in which case nothing more is said about it. Messages pass through the stage's
masker before they leave the runner.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import tempfile
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bastion.client import ClientError, LeaseLostError, RunnerClient, UnauthorizedError
from bastion.engine.backend import Backend
from bastion.engine.compiler import CompileError, CompileOptions, compile_pipeline
from bastion.engine.executor import Executor, RunResult
from bastion.engine.hardening import Hardening
from bastion.engine.masking import SecretMasker, SecretTooShortError, validate_secrets
from bastion.engine.plan import LABEL_OWNER_HOST, LABEL_OWNER_PID, Plan
from bastion.rpc.messages import Lease, StageDetails, StageResult, StepState
from bastion.runner import manifests
from bastion.runner.cleanup import LABEL_RUNNER, LABEL_STAGE, run_id_for
from bastion.runner.context import build_context
from bastion.runner.lease import LeaseKeeper
from bastion.runner.reporter import StageReporter
from bastion.runner.source import (
    SourceCancelledError,
    SourceError,
    prepare_source,
    workspace_archive,
)
from bastion.runner.uploader import Uploader
from bastion.spec.conditions import MatchContext
from bastion.spec.diagnostics import Diagnostic

log = logging.getLogger("bastion.runner.stage")

DEFAULT_TIMEOUT = 3600.0
# A message about a secret, not one.
_MISSING_SECRET_HINT = (
    "the server did not send it: add the secret to the repository or organisation, and check "  # noqa: S105
    "that its event, branch and image scope allow this build"
)


class StageError(Exception):
    """The stage cannot run; the message is for the user (shown as the stage's error)."""


@dataclass(frozen=True)
class StageEnv:
    """What every stage of one runner shares."""

    rpc: RunnerClient
    backend: Backend
    hardening: Hardening
    runner_name: str
    insecure: bool = False
    workdir: str = ""  # parent of the stages' temporary folders; "" = system default
    upload_flush: float = 0.25


class StageRun:
    """One lease, run once. ``run`` never raises."""

    def __init__(self, env: StageEnv, lease: Lease) -> None:
        self.env = env
        self.lease = lease
        self.stage_id = lease.stage_id
        self.run_id = run_id_for(lease.stage_id, lease.lease_id)
        self.cancel = threading.Event()
        self.give_up = threading.Event()
        self._stop_reason = ""
        self.result: StageResult | None = None  # what was (or would have been) completed
        self.completed = False

    def stop(self, reason: str) -> None:
        """Stop the stage from outside (runner shutdown, lease lost): it ends as error."""
        if not self._stop_reason:
            self._stop_reason = reason
        self.cancel.set()

    # -- the whole stage -----------------------------------------------------------------------

    def run(self) -> None:
        env, lease = self.env, self.lease
        keeper = LeaseKeeper(env.rpc, lease, self.cancel, self.give_up)
        uploader = Uploader(
            env.rpc,
            self.stage_id,
            lease.lease_id,
            give_up=self.give_up,
            flush_interval=env.upload_flush,
        )
        reporter = StageReporter(uploader)
        keeper.start()
        uploader.start()
        masker = SecretMasker(())
        plan: Plan | None = None
        run: RunResult | None = None
        state, error = StepState.ERROR, ""
        try:
            # Protocol 2: the details came with the lease (one request less per stage).
            details = lease.details or env.rpc.stage(
                self.stage_id, lease.lease_id, stop=self.give_up
            )
            masker = _masker(details)
            plan, match, clone = self._compile(details)
            reporter.announce(plan)
            if self._stop_reason:
                raise StageError(self._stop_reason)
            run = self._execute(details, plan, match, masker, reporter, clone=clone)
            state, error = StepState(run.state.value), run.reason
        except (LeaseLostError, UnauthorizedError) as exc:
            keeper.lost = True
            self.give_up.set()
            error = exc.message
        except StageError as exc:
            error = str(exc)
        except ClientError as exc:
            error = f"the runner could not talk to the server: {exc.message}"
        except Exception as exc:  # a bug must not kill the runner: end the stage with it
            # The traceback is for the operator, but its messages may quote a secret: mask it.
            trace = "".join(traceback.format_exception(exc))
            log.error("stage %d: internal error\n%s", self.stage_id, masker.mask(trace))
            error = f"internal error in the runner: {type(exc).__name__}: {exc}"

        # Why the stage ended, when something outside the pipeline ended it.
        if keeper.lapsed:
            state, error = (
                StepState.ERROR,
                "the runner lost contact with the server for longer than the stage's lease "
                f"({lease.expires_in:g} s) and stopped the stage",
            )
        elif keeper.cancelled:
            state, error = StepState.KILLED, "cancelled"
        elif self._stop_reason:
            state, error = StepState.ERROR, self._stop_reason
        error = masker.mask(error)
        steps = reporter.final_steps(plan, run, reason=error) if plan is not None else []
        self.result = StageResult(state=state, error=error, steps=steps)
        try:
            self._finish(keeper, uploader, self.result)
        finally:
            keeper.stop()
        log.info("stage %d: %s%s", self.stage_id, state.value, f" ({error})" if error else "")

    def _finish(self, keeper: LeaseKeeper, uploader: Uploader, result: StageResult) -> None:
        """Deliver the queued logs, then ``complete``, while heartbeats go on."""
        if _lease_gone(keeper, uploader):
            uploader.close(0)
            return
        # `complete` carries every step's final state: step updates still waiting are dropped
        # (for short steps, all of them); log lines are all delivered first.
        if not uploader.close(None, drop_updates=True):
            if _lease_gone(keeper, uploader):
                return
            log.error(
                "stage %d: %d updates and log lines could not be delivered",
                self.stage_id,
                uploader.pending,
            )
        if self.give_up.is_set():
            return
        keeper.completing.set()
        try:
            self.env.rpc.complete(
                self.stage_id, self.lease.lease_id, result, retry_for=600.0, stop=self.give_up
            )
            self.completed = True
        except ClientError as exc:
            log.error("stage %d: could not report the result: %s", self.stage_id, exc)

    # -- steps ---------------------------------------------------------------------------------

    def _compile(self, details: StageDetails) -> tuple[Plan, MatchContext, bool]:
        """The plan, the match context and whether the pipeline wants a clone."""
        parsed = manifests.parsed(details.config, details.config_path or ".drone.yml")
        if not parsed.ok:
            raise StageError(
                f"{details.config_path} has errors, nothing was run:\n"
                + _format([d for d in parsed.diagnostics if d.is_error])
            )
        manifest = parsed.manifest
        names = [p.name for p in manifest.pipelines]
        if details.pipeline not in names:
            raise StageError(
                f"{details.config_path} has no pipeline named {details.pipeline!r} at this "
                f"commit (it has: {', '.join(names) or 'none'})"
            )
        context = build_context(details)
        options = CompileOptions(
            run_id=self.run_id,
            hardening=self.env.hardening,
            trusted=details.repo.trusted,
            timeout=float(details.stage.timeout) if details.stage.timeout > 0 else DEFAULT_TIMEOUT,
            stage_number=details.stage.number,
            owner_labels={
                LABEL_OWNER_PID: str(os.getpid()),
                LABEL_OWNER_HOST: os.uname().nodename,
                LABEL_RUNNER: self.env.runner_name,
                LABEL_STAGE: str(self.stage_id),
            },
            host_arch=platform.machine(),
            missing_secret_hint=_MISSING_SECRET_HINT,
            secret_grants=details.secret_grants,
            secret_denials=details.secret_denials,
        )
        try:
            plan = compile_pipeline(
                manifest, names.index(details.pipeline), context, details.secrets, options
            )
        except CompileError as exc:
            raise StageError(
                _format(exc.diagnostics) + "\nthe stage was refused: no container was started"
            ) from None
        pipeline = manifest.pipelines[names.index(details.pipeline)]
        return plan, MatchContext.from_build(context), not pipeline.clone.disable

    def _execute(
        self,
        details: StageDetails,
        plan: Plan,
        match: MatchContext,
        masker: SecretMasker,
        reporter: StageReporter,
        *,
        clone: bool,
    ) -> RunResult:
        tmp = Path(
            tempfile.mkdtemp(prefix=f"bastion-stage-{self.stage_id}-", dir=self.env.workdir or None)
        )
        archive: IO[bytes] | None = None
        try:
            if clone:
                archive = self._workspace(details, tmp, masker)
            if self.cancel.is_set():
                raise StageError(self._stop_reason or "cancelled before the first step")
            executor = Executor(self.env.backend, masker, reporter)
            return executor.run(plan, match, workspace=archive, cancel=self.cancel)
        finally:
            if archive is not None:
                archive.close()
            shutil.rmtree(tmp, ignore_errors=True)

    def _workspace(
        self, details: StageDetails, tmp: Path, masker: SecretMasker
    ) -> IO[bytes] | None:
        def download(dest: Path) -> None:
            self.env.rpc.source(self.stage_id, self.lease.lease_id, dest, stop=self.give_up)

        try:
            checkout = prepare_source(
                details, tmp, download, masker, self.cancel, insecure=self.env.insecure
            )
            if checkout is None:
                return None
            return workspace_archive(checkout, tmp)
        except SourceCancelledError as exc:
            raise StageError(self._stop_reason or str(exc)) from None
        except SourceError as exc:
            raise StageError(f"cannot get the source: {exc}") from None
        except OSError as exc:
            raise StageError(f"cannot prepare the workspace on the runner: {exc}") from None


def _lease_gone(keeper: LeaseKeeper, uploader: Uploader) -> bool:
    """The server said the lease is not ours: nothing more may be sent about the stage."""
    return keeper.lost or uploader.lease_lost


def _masker(details: StageDetails) -> SecretMasker:
    values = dict(details.secrets)
    if details.clone.password:
        values["clone password"] = details.clone.password
    try:
        validate_secrets(values)
        return SecretMasker(values.values())
    except SecretTooShortError as exc:
        raise StageError(str(exc)) from None


def _format(diagnostics: list[Diagnostic]) -> str:
    return "\n".join(d.format() for d in diagnostics)


def refused(reason: str) -> StageResult:
    """The result of a lease the runner will not run (it is shutting down)."""
    return StageResult(state=StepState.ERROR, error=reason)
