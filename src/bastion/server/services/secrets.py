"""What secret values a stage receives, step by step: the one place that decides, for two callers.

``StageDetails`` (the leaseholder's stage details) takes its clone credentials and secrets
from here (:meth:`StageSecrets.delivery`), and the log service masks that stage's log lines
with a masker built here, so whatever was handed out is also masked on arrival.

**Where a secret comes from.** A ``from_secret`` name that a ``kind: secret`` document of the
configuration declares (``get: {path, name}``) is asked of the external provider
(``services.secret_providers``), and only of it. Any other name is looked up in the stored
scopes, the most specific winning: the repository's, else its organisation's (namespace = the
repository's owner), else a global secret. The winner's filters decide; a denial is never
retried in a wider scope.

**Who receives it.** The stage's own pipeline is parsed (the configuration at the build's
commit, the text the runner compiles) and each step's and service's references are read
(``engine.secret_refs``). Each reference is checked with ``secret_rules`` — fork, pull
request, event, branch, then per step the plugin-only image rule — and the stage receives
only the values some step is entitled to, with per-step *grants* (the names each step may
use) and *denials* (each refused name with the rule that refused it). The runner's compiler
gives each step only its grants and fails a step with a denial, with the message, before its
container exists. A fork build's references are all denied and no provider is even asked. A
secret that does not exist, or cannot be decrypted, or a provider that cannot answer, or a
value too short to be masked (stored or a provider's), is a denial with its reason too.

**Cost.** The references of a pipeline depend only on (repository, commit, config path,
pipeline): they are kept in a bounded LRU, and nothing is parsed at all when no scope holds a
secret for the repository and no provider is configured (the stage then gets empty grants,
and a step that references a secret fails with "not granted").

**Record.** Each hand-out sets the secrets' ``last_used`` / ``last_build`` and records a
``secret.delivered`` audit event per secret (build, stage, the steps that reference it,
runner; never the value).

**Masking** (:meth:`StageSecrets.masker`): the masker of a stage masks the values handed to
it *and every secret of its repository, organisation and the global scope*, plus the clone
password. Masking more than was handed out costs nothing in safety and covers a value a step
could only have got by another route. The maskers are rebuilt when secrets change through the
API (:meth:`StageSecrets.secrets_changed`), and the values handed out are remembered with the
masker, so a secret replaced or deleted after the stage received it stays masked in that
stage's logs — as long as the server process runs, for the last 8192 stages (the built
maskers of the last 256; the runner masks before sending anyway).

A private repository on a forge is cloned with the server's token for that forge, given to
the runner for its clone only. The local forge needs no credentials: the runner downloads a
git bundle, authorised by its lease.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bastion.engine.masking import MIN_SECRET_LENGTH, SecretMasker
from bastion.engine.secret_refs import StepRefs, code_variable, pipeline_refs
from bastion.rpc.messages import PATH_SOURCE, CloneInfo
from bastion.server.services.audit import AuditLog
from bastion.server.services.secret_providers import (
    ExternalSecretRequest,
    SecretProvider,
    SecretProviderError,
)
from bastion.server.services.secret_rules import build_denial, pull_applies, step_denial
from bastion.server.settings import ServerSettings
from bastion.spec.model import Pipeline
from bastion.spec.parse import parse
from bastion.store.errors import StoreError
from bastion.store.repository import Store
from bastion.store.secret_store import SecretRecord
from bastion.store.types import Build, Repo, SecretFilters, Stage

log = logging.getLogger("bastion.server")

_CLONE_USERNAMES = {"github": "x-access-token", "gitea": "oauth2", "gitlab": "oauth2"}
_MASKER_CACHE = 256  # stages whose built masker is kept
_HANDED_CACHE = 8192  # stages whose handed-out values are remembered (small sets)
_REFS_CACHE = 1024
_FULL_SHA = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")


def referenced_secrets(pipeline: Pipeline) -> frozenset[str]:
    """Every secret name ``pipeline`` refers to (any step, service, setting or pull)."""
    names: set[str] = set(pipeline.image_pull_secrets)
    for step in pipeline_refs(pipeline):
        names.update(step.env)
    return frozenset(names)


@dataclass(frozen=True)
class StageRefs:
    """What a stage's pipeline refers to: per step, and the external documents by name."""

    steps: tuple[StepRefs, ...]
    external: Mapping[str, tuple[str, str]]  # kind: secret name -> (get.path, get.name)

    @property
    def names(self) -> frozenset[str]:
        out: set[str] = set()
        for step in self.steps:
            out.update(step.env, step.pull)
        return frozenset(out)


_NO_REFS = StageRefs((), {})


def stage_refs(config: str | bytes, pipeline_name: str, filename: str) -> StageRefs:
    """The references of pipeline ``pipeline_name`` of ``config``; none when the
    configuration does not parse (the runner then refuses the stage) or has no such pipeline."""
    result = parse(config, filename)
    if not result.ok:
        return _NO_REFS
    pipeline = result.manifest.pipeline(pipeline_name)
    if pipeline is None:
        return _NO_REFS
    external = {
        doc.name: (doc.get.path, doc.get.name or doc.name)
        for doc in result.manifest.secrets
        if doc.get is not None
    }
    return StageRefs(pipeline_refs(pipeline), external)


def stage_secret_names(config: str | bytes, pipeline_name: str, filename: str) -> frozenset[str]:
    """The secret names the pipeline ``pipeline_name`` of ``config`` refers to."""
    return stage_refs(config, pipeline_name, filename).names


@dataclass(frozen=True)
class StageDelivery:
    """What a stage is sent: the values some step is entitled to, which names each step may
    use (``grants``) and which it may not, with the reason (``denials``)."""

    values: dict[str, str] = field(default_factory=dict, repr=False)
    grants: dict[str, list[str]] = field(default_factory=dict)
    denials: dict[str, dict[str, str]] = field(default_factory=dict)


_NOTHING = StageDelivery()  # the answer when no scope holds a secret (compared by identity)


def _withdraw(
    name: str, reason: str, grants: dict[str, list[str]], denials: dict[str, dict[str, str]]
) -> None:
    """Take ``name`` back from every step it was granted to, with ``reason``."""
    for step_name, names in grants.items():
        if name in names:
            names.remove(name)
            denials.setdefault(step_name, {})[name] = reason


@dataclass(frozen=True)
class _Source:
    """Where a referenced name resolved to: a stored record, or an external value."""

    filters: SecretFilters
    record: SecretRecord | None = None
    value: str = field(default="", repr=False)
    denial: str = ""  # set when the name cannot be had at all (missing, provider down)


def _masker_of(values: Iterable[str]) -> SecretMasker:
    # Values too short to mask are refused where secrets are set; skip them here rather
    # than fail (the masker would refuse them).
    return SecretMasker(v for v in values if len(v.strip()) >= MIN_SECRET_LENGTH)


class _Masking:
    """A stage's masker (None: to be rebuilt) and the values handed to the stage, which
    survive rebuilds."""

    __slots__ = ("handed", "masker", "repo_id")

    def __init__(self, repo_id: int, handed: frozenset[str], masker: SecretMasker | None) -> None:
        self.repo_id = repo_id
        self.handed = handed
        self.masker = masker


class StageSecrets:
    def __init__(
        self,
        settings: ServerSettings,
        store: Store,
        *,
        audit: AuditLog | None = None,
        provider: SecretProvider | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._audit = audit if audit is not None else AuditLog(store)
        self._provider = provider
        self._maskers: OrderedDict[int, _Masking] = OrderedDict()
        self._refs: OrderedDict[tuple[int, str, str, str], StageRefs] = OrderedDict()
        self._lock = threading.Lock()
        self._changes = 0  # counts secrets_changed calls: a masker built across one is stale
        self.parses = 0  # configurations parsed (the cache's misses), for tests and benchmarks

    def clone(self, repo: Repo, stage: Stage) -> CloneInfo:
        if repo.forge == "local":
            return CloneInfo(kind="bundle", url=PATH_SOURCE.format(stage_id=stage.id))
        token = self._forge_token(repo) if repo.private else ""
        return CloneInfo(
            kind="git",
            url=repo.http_url,
            username=_CLONE_USERNAMES.get(repo.forge, "oauth2") if token else "",
            password=token,
        )

    # -- deciding ------------------------------------------------------------------------------

    def refs(self, repo: Repo, build: Build, stage: Stage, config: str | bytes) -> StageRefs:
        """The stage pipeline's references, from the LRU or parsed once."""
        key = (repo.id, build.after, repo.config_path, stage.name)
        with self._lock:
            cached = self._refs.get(key)
            if cached is not None:
                self._refs.move_to_end(key)
                return cached
        # A commit's configuration never changes; anything but a full commit id (empty, a
        # branch or a short id) may name other text next time, and is parsed every time.
        found = stage_refs(config, stage.name, repo.config_path)
        with self._lock:
            self.parses += 1
            if _FULL_SHA.match(build.after):
                self._refs[key] = found
                while len(self._refs) > _REFS_CACHE:
                    self._refs.popitem(last=False)
        return found

    def plan(
        self, repo: Repo, build: Build, stage: Stage, config: str | bytes
    ) -> tuple[StageDelivery, list[SecretRecord]]:
        """Decide, without handing out or recording anything: the delivery and the stored
        records it opened."""
        if self._provider is None and not self._store.has_secrets_for(repo.id, repo.owner):
            # Nothing anyone could receive: no parsing, and (``delivery``) nothing to mask.
            return _NOTHING, []
        refs = self.refs(repo, build, stage, config)
        if not refs.steps:
            return StageDelivery(), []
        sources = self._sources(repo, build, refs)
        # A deployment parameter is a variable of every step (not in the configuration): one
        # that loads other code makes no step a plugin.
        loader = next((k for k in sorted(build.params) if code_variable(k)), "")
        grants: dict[str, list[str]] = {}
        denials: dict[str, dict[str, str]] = {}
        granted: set[str] = set()
        for step in refs.steps:
            mine: set[str] = set()
            refused: dict[str, str] = {}
            for name in sorted(step.env | step.pull):
                src = sources[name]
                reason = src.denial or build_denial(name, src.filters, build)
                if not reason and name in step.env:
                    reason = step_denial(
                        name,
                        src.filters,
                        step.name,
                        step.image,
                        plugin=step.plugin and not loader,
                        not_plugin=step.not_plugin
                        or f"the build's parameter {loader} can make it run other code",
                    )
                elif not reason and not pull_applies(src.filters, step.image):
                    continue  # registry credentials for other images: not this step's
                if reason:
                    refused[name] = reason
                else:
                    mine.add(name)
            grants[step.name] = sorted(mine)
            if refused:
                denials[step.name] = refused
            granted |= mine
        values: dict[str, str] = {}
        opened: list[SecretRecord] = []
        for name in sorted(granted):
            src = sources[name]
            if src.record is None:
                values[name] = src.value
                continue
            try:
                value = self._store.open_secret(src.record)
            except StoreError as exc:
                log.error("%s", exc)
                _withdraw(
                    name,
                    f"secret {name!r} cannot be decrypted on the server (edited in the "
                    "database, moved, or the server key changed): ask an administrator",
                    grants,
                    denials,
                )
                continue
            if len(value.strip()) < MIN_SECRET_LENGTH:
                # The API refuses such values; one stored otherwise (before that rule, or
                # through the store directly) would show in the logs as is.
                _withdraw(
                    name,
                    f"secret {name!r} is shorter than {MIN_SECRET_LENGTH} characters (surrounding "
                    "whitespace does not count) and could not be masked in build logs: give "
                    "it a longer value",
                    grants,
                    denials,
                )
                continue
            values[name] = value
            opened.append(src.record)
        return StageDelivery(values, grants, denials), opened

    def delivery(
        self, repo: Repo, build: Build, stage: Stage, config: str | bytes, *, runner: str = ""
    ) -> StageDelivery:
        """What ``stage`` is sent; its masker masks the values from now on, their use is
        recorded and audited."""
        decided, opened = self.plan(repo, build, stage, config)
        self._remember(repo, stage, decided.values.values(), scopes_empty=decided is _NOTHING)
        if not decided.values:
            return decided
        label = f"{repo.slug}#{build.number}"
        try:
            self._store.mark_secrets_used(opened, label)
        except StoreError as exc:  # a bookkeeping failure must not fail the stage
            log.error("could not record the use of secrets by %s: %s", label, exc)
        scopes = {r.name: r.scope for r in opened}
        for name in sorted(decided.values):
            steps = sorted(s for s, names in decided.grants.items() if name in names)
            self._audit.record(
                "secret.delivered",
                repo=repo.slug,
                build=build.number,
                stage=stage.number,
                step=",".join(steps)[:255],
                runner=runner,
                secret=name,
                detail={"scope": scopes.get(name, "external"), "steps": steps},
            )
        log.info(
            "stage %d of %s #%d receives secrets: %s",
            stage.id,
            repo.slug,
            build.number,
            ", ".join(sorted(decided.values)),
        )
        return decided

    def entitled(
        self, repo: Repo, build: Build, stage: Stage, config: str | bytes
    ) -> dict[str, str]:
        """The values ``stage`` may receive, without handing them out."""
        return self.plan(repo, build, stage, config)[0].values

    def secrets(
        self, repo: Repo, build: Build, stage: Stage, config: str | bytes
    ) -> dict[str, str]:
        """The values handed to ``stage`` (:meth:`delivery` without the per-step parts)."""
        return self.delivery(repo, build, stage, config).values

    def _sources(self, repo: Repo, build: Build, refs: StageRefs) -> dict[str, _Source]:
        names = refs.names
        stored = self._store.find_secrets(repo.id, repo.owner, names - refs.external.keys())
        out: dict[str, _Source] = {}
        for name in names:
            if name in refs.external:
                out[name] = self._external(repo, build, name, *refs.external[name])
            elif name in stored:
                out[name] = _Source(stored[name].filters, record=stored[name])
            else:
                out[name] = _Source(
                    SecretFilters(),
                    denial=(
                        f"secret {name!r} does not exist: neither repository {repo.slug}, nor "
                        f"organisation {repo.owner!r}, nor the global scope has it"
                    ),
                )
        return out

    def _external(self, repo: Repo, build: Build, name: str, path: str, key: str) -> _Source:
        if build.fork:  # not even asked: the rule below refuses it anyway
            return _Source(SecretFilters())
        if self._provider is None:
            return _Source(
                SecretFilters(),
                denial=(
                    f"secret {name!r} is a kind: secret document, and no secret provider is "
                    "configured on the server"
                ),
            )
        try:
            found = self._provider.find(ExternalSecretRequest(name, path, key, repo, build))
        except SecretProviderError as exc:
            return _Source(
                SecretFilters(),
                denial=f"secret {name!r}: the secret provider is unavailable: {exc}",
            )
        if found is None:
            return _Source(
                SecretFilters(),
                denial=f"secret {name!r}: the secret provider has no secret at {path!r}",
            )
        if len(found.value.strip()) < MIN_SECRET_LENGTH:
            # The API refuses a stored value this short; a provider's is refused here, since
            # the masker skips it and it would show in the logs as is.
            return _Source(
                SecretFilters(),
                denial=(
                    f"secret {name!r}: the secret provider's value is shorter than "
                    f"{MIN_SECRET_LENGTH} characters (surrounding whitespace does not count) "
                    "and could not be masked in build logs"
                ),
            )
        # A fork never gets one, whatever the provider says (rule 1 of secret_rules).
        return _Source(SecretFilters(pull_request=found.pull_request), value=found.value)

    # -- masking -------------------------------------------------------------------------------

    def masker(self, stage: Stage) -> SecretMasker:
        """A masker of every value handed to ``stage`` and every secret its repository could
        receive (cached per stage)."""
        with self._lock:
            cached = self._maskers.get(stage.id)
            if cached is not None and cached.masker is not None:
                self._maskers.move_to_end(stage.id)
                return cached.masker
        repo = self._store.get_repo_by_id(stage.repo_id)
        return self._remember(repo, stage, ())

    def secrets_changed(self) -> None:
        """A secret of some scope was set or deleted: every stage's masker is rebuilt at its
        next use, with the current secrets and everything handed out before (this process's
        maskers; another server process rebuilds its own when its cache turns over)."""
        with self._lock:
            self._changes += 1
            for entry in self._maskers.values():
                entry.masker = None

    def repo_secrets_changed(self, repo_id: int) -> None:
        """A secret of one repository changed: its stages' maskers are rebuilt."""
        with self._lock:
            self._changes += 1
            for entry in self._maskers.values():
                if entry.repo_id == repo_id:
                    entry.masker = None

    def _scope_values(self, repo: Repo) -> set[str]:
        values: set[str] = set()
        for record in self._store.find_secrets(repo.id, repo.owner, None).values():
            try:
                values.add(self._store.open_secret(record))
            except StoreError:
                continue  # never handed out either (plan refuses it): nothing to mask
        return values

    def _remember(
        self,
        repo: Repo | None,
        stage: Stage,
        handed: Iterable[str],
        *,
        scopes_empty: bool = False,
    ) -> SecretMasker:
        """Build (and cache) the masker of ``stage``: ``handed`` and whatever was handed to
        it before, the secrets of its scopes (unless the caller just found there are none),
        the clone password."""
        with self._lock:
            changes = self._changes
        others: set[str] = set()
        if repo is not None:
            if not scopes_empty:
                others.update(self._scope_values(repo))
            others.add(self.clone(repo, stage).password)
        with self._lock:
            previous = self._maskers.get(stage.id)
        remembered = frozenset(handed) | (previous.handed if previous is not None else frozenset())
        masker = _masker_of(remembered | others)
        with self._lock:
            current = self._maskers.get(stage.id)
            if current is not None and not current.handed <= remembered:
                # Another request handed this stage more meanwhile: mask both.
                remembered |= current.handed
                masker = _masker_of(remembered | others)
            # Secrets changed while this one was built: use it now, rebuild it next time.
            fresh = masker if changes == self._changes else None
            self._maskers[stage.id] = _Masking(stage.repo_id, remembered, fresh)
            self._maskers.move_to_end(stage.id)
            # What a stage was handed outlives its masker: an external or since-changed
            # value is in no scope, and only this memory masks it when the masker is rebuilt.
            while len(self._maskers) > _HANDED_CACHE:
                self._maskers.popitem(last=False)
            built = sum(1 for e in self._maskers.values() if e.masker is not None)
            for entry in self._maskers.values():
                if built <= _MASKER_CACHE:
                    break
                if entry.masker is not None:
                    entry.masker = None
                    built -= 1
        return masker

    def _forge_token(self, repo: Repo) -> str:
        tokens = {
            "github": self._settings.github_token,
            "gitea": self._settings.gitea_token,
            "gitlab": self._settings.gitlab_token,
        }
        token = tokens.get(repo.forge)
        return token.get_secret_value() if token is not None else ""
