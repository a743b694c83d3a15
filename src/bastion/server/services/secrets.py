"""What secret values a stage receives: the one place that decides, for two callers.

``StageDetails`` (the leaseholder's ``GET /rpc/v1/stages/{id}``) takes its clone credentials
and secrets from here, and the log service masks that stage's log lines with a masker built
here, so whatever was handed out is also masked on arrival.

**Which repository secrets a stage receives** (:meth:`StageSecrets.secrets`): only those its
own pipeline references — ``from_secret`` in the environment of the pipeline, of its steps
and services, in plugin ``settings``, and the names in ``image_pull_secrets`` — found by
parsing the configuration at the build's commit (the same text the runner compiles) and
taking the pipeline named like the stage. Then, by event:

* a **fork** pull request (``build.fork``) gets none, whatever the secrets' flags;
* a ``pull_request`` build gets only the secrets whose ``pull_request`` flag is set;
* every other event gets every referenced secret that exists.

A referenced secret that does not exist, or is withheld, is simply absent: the runner's
compiler then fails the step with "references secret X, which was not provided".
Organisation and global secrets, branch / event / image filters and external providers come
later; until then this is all a stage can get.

**Masking** (:meth:`StageSecrets.masker`): the masker of a stage masks the values handed to
it *and every secret of its repository*, plus the clone password. Masking more than was
handed out costs nothing in safety and covers a value a step could only have got by another
route. The maskers of a repository's stages are rebuilt when its secrets change through the
API (:meth:`StageSecrets.repo_secrets_changed`), and the values handed out are remembered
with the masker, so a secret replaced or deleted after the stage received it stays masked in
that stage's logs — as long as the server process runs: after a restart the masker is
rebuilt from the current secrets (the runner masks before sending anyway).

A private repository on a forge is cloned with the server's token for that forge, given to
the runner for its clone only. The local forge needs no credentials: the runner downloads a
git bundle, authorised by its lease.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from bastion.engine.masking import MIN_SECRET_LENGTH, SecretMasker
from bastion.rpc.messages import PATH_SOURCE, CloneInfo
from bastion.server.settings import ServerSettings
from bastion.spec.model import Pipeline, SecretRef, settings_to_env
from bastion.spec.parse import parse
from bastion.store.repository import Store
from bastion.store.types import Build, Repo, Stage

log = logging.getLogger("bastion.server")

_CLONE_USERNAMES = {"github": "x-access-token", "gitea": "oauth2", "gitlab": "oauth2"}
_MASKER_CACHE = 256


def referenced_secrets(pipeline: Pipeline) -> frozenset[str]:
    """The secret names ``pipeline`` refers to: ``from_secret`` in the pipeline's, its
    steps' and its services' environment and in plugin settings (as the compiler reads
    them), and ``image_pull_secrets``."""
    names: set[str] = set(pipeline.image_pull_secrets)

    def collect(env: Mapping[str, str | SecretRef]) -> None:
        names.update(v.from_secret for v in env.values() if isinstance(v, SecretRef))

    collect(pipeline.environment)
    for step in (*pipeline.steps, *pipeline.services):
        collect(step.environment)
        collect(settings_to_env(step.settings))
    return frozenset(names)


def stage_secret_names(config: str | bytes, pipeline_name: str, filename: str) -> frozenset[str]:
    """The secret names the pipeline ``pipeline_name`` of ``config`` refers to; none when
    the configuration does not parse (the runner then refuses the stage) or has no such
    pipeline."""
    result = parse(config, filename)
    if not result.ok:
        return frozenset()
    pipeline = result.manifest.pipeline(pipeline_name)
    return frozenset() if pipeline is None else referenced_secrets(pipeline)


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
    def __init__(self, settings: ServerSettings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._maskers: OrderedDict[int, _Masking] = OrderedDict()
        self._lock = threading.Lock()
        self._changes = 0  # counts repo_secrets_changed calls: a masker built across one is stale

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

    def entitled(
        self, repo: Repo, build: Build, stage: Stage, config: str | bytes
    ) -> dict[str, str]:
        """The repository secrets ``stage`` may receive (the rules of the module docstring),
        without remembering them for masking: :meth:`secrets` is what hands them out."""
        if build.fork:
            return {}
        if not self._store.list_repo_secrets(repo.id):
            return {}  # nothing to hand out: skip parsing the whole config for every stage
        names = stage_secret_names(config, stage.name, repo.config_path)
        if not names:
            return {}
        return self._store.get_repo_secrets(
            repo.id, names, pull_request_only=build.event == "pull_request"
        )

    def secrets(
        self, repo: Repo, build: Build, stage: Stage, config: str | bytes
    ) -> dict[str, str]:
        """The secrets handed to ``stage``; its masker is made to mask them from now on."""
        handed = self.entitled(repo, build, stage, config)
        self._remember(repo, stage, handed.values())
        if handed:
            log.info(
                "stage %d of %s #%d receives secrets: %s",
                stage.id,
                repo.slug,
                build.number,
                ", ".join(sorted(handed)),
            )
        return handed

    def masker(self, stage: Stage) -> SecretMasker:
        """A masker of every value handed to ``stage`` and every secret of its repository
        (cached per stage)."""
        with self._lock:
            cached = self._maskers.get(stage.id)
            if cached is not None and cached.masker is not None:
                self._maskers.move_to_end(stage.id)
                return cached.masker
        repo = self._store.get_repo_by_id(stage.repo_id)
        return self._remember(repo, stage, ())

    def repo_secrets_changed(self, repo_id: int) -> None:
        """A secret of the repository was set or deleted: its stages' maskers are rebuilt at
        their next use, with the current secrets and everything handed out before (this
        process's maskers; another server process rebuilds its own when its cache turns
        over)."""
        with self._lock:
            self._changes += 1
            for entry in self._maskers.values():
                if entry.repo_id == repo_id:
                    entry.masker = None

    def _remember(self, repo: Repo | None, stage: Stage, handed: Iterable[str]) -> SecretMasker:
        """Build (and cache) the masker of ``stage``: ``handed`` and whatever was handed to
        it before, the repository's current secrets, the clone password."""
        with self._lock:
            changes = self._changes
        others: set[str] = set()
        if repo is not None:
            others.update(self._store.get_repo_secrets(repo.id).values())
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
            while len(self._maskers) > _MASKER_CACHE:
                self._maskers.popitem(last=False)
        return masker

    def _forge_token(self, repo: Repo) -> str:
        tokens = {
            "github": self._settings.github_token,
            "gitea": self._settings.gitea_token,
            "gitlab": self._settings.gitlab_token,
        }
        token = tokens.get(repo.forge)
        return token.get_secret_value() if token is not None else ""
