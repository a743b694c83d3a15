"""What secret values a stage receives: the one place that decides, for two callers.

``StageDetails`` (the leaseholder's ``GET /rpc/v1/stages/{id}``) takes its clone credentials
and secrets from here, and the log service masks that stage's log lines with exactly these
values, so whatever was handed out is also what gets masked on arrival.

Today a stage receives no repository secrets (they arrive with the secrets issue, scoped by
name, event and branch, and only for steps that reference them); a private repository on a
forge is cloned with the server's token for that forge, given to the runner for its clone
only. The local forge needs no credentials: the runner downloads a git bundle, authorised by
its lease.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from bastion.engine.masking import MIN_SECRET_LENGTH, SecretMasker
from bastion.rpc.messages import PATH_SOURCE, CloneInfo
from bastion.server.settings import ServerSettings
from bastion.store.repository import Store
from bastion.store.types import Build, Repo, Stage

_CLONE_USERNAMES = {"github": "x-access-token", "gitea": "oauth2", "gitlab": "oauth2"}
_MASKER_CACHE = 256


class StageSecrets:
    def __init__(self, settings: ServerSettings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._maskers: OrderedDict[int, SecretMasker] = OrderedDict()
        self._lock = threading.Lock()

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

    def secrets(self, repo: Repo, build: Build, stage: Stage) -> dict[str, str]:
        """The secrets this stage is entitled to. None yet (see the module docstring)."""
        del repo, build, stage
        return {}

    def masker(self, stage: Stage) -> SecretMasker:
        """A masker of every value handed to ``stage`` (cached per stage)."""
        with self._lock:
            cached = self._maskers.get(stage.id)
            if cached is not None:
                self._maskers.move_to_end(stage.id)
                return cached
        values: list[str] = []
        repo = self._store.get_repo_by_id(stage.repo_id)
        build = self._store.get_build_by_id(stage.build_id)
        if repo is not None and build is not None:
            values.extend(self.secrets(repo, build, stage).values())
            values.append(self.clone(repo, stage).password)
        # Values too short to mask are refused where secrets are set; skip them here rather
        # than fail (the masker would refuse them).
        masker = SecretMasker(v for v in values if len(v.strip()) >= MIN_SECRET_LENGTH)
        with self._lock:
            self._maskers[stage.id] = masker
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
