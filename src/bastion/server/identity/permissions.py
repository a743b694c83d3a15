"""What a user may do on a repository: the rule, the forge mirror, and who may activate.

**The rule** (:func:`scopes_for`, behind ``auth.repo_scopes``). System administrators: read,
write and admin everywhere. Anyone else: the scopes stored for them on that repository —
mirrored from the forge for GitHub, Gitea and GitLab repositories, granted by an
administrator for local-forge repositories (``PUT /api/repos/{o}/{n}/permissions/{login}``)
— plus read on an active repository whose visibility is ``public`` or ``internal``. An
inactive repository exists only for administrators and its repository admins (who may
activate it); a private repository without read is invisible (404). Scopes nest: admin
implies write, write implies read.

**The mirror.** At every forge login the user's permission on each registered repository of
that forge is asked (GitHub and Gitea ``permissions.{pull,push,admin}``, GitLab access
levels: reporter read, developer write, maintainer admin) and stored. When a request needs a
forge repository and the stored answer is older than ``permission_cache_seconds`` (or
missing), it is asked again with the user's stored OAuth token. When the forge cannot be
reached, the stored answer is kept (logged), never widened.

**Activation** (``POST /api/repos/{o}/{n}``): repository admins in the sense above, and only
repositories whose ``owner/name`` matches one of the globs of ``BASTION_REPOSITORY_FILTER``
when it is set (also for system administrators, also when registering).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from fnmatch import fnmatchcase

from bastion.scm.accounts import AccountClient, GiteaAccounts, GitHubAccounts, GitLabAccounts
from bastion.scm.errors import ForgeError
from bastion.server.errors import Forbidden
from bastion.server.identity.admission import names
from bastion.server.settings import ServerSettings
from bastion.store.identity_store import RepoPermission
from bastion.store.repository import Store
from bastion.store.types import Repo, Scope, User

log = logging.getLogger("bastion.server")

ALL = frozenset({Scope.READ, Scope.WRITE, Scope.ADMIN})
_OPEN_VISIBILITY = frozenset({"public", "internal"})


def closed(scopes: frozenset[Scope] | set[Scope]) -> frozenset[Scope]:
    """``scopes`` with what they imply (admin → write → read)."""
    out = set(scopes)
    if Scope.ADMIN in out:
        out.add(Scope.WRITE)
    if Scope.WRITE in out:
        out.add(Scope.READ)
    return frozenset(out)


def scopes_for(
    user: User, repo: Repo, grants: Mapping[int, frozenset[Scope]] | None = None
) -> frozenset[Scope]:
    if user.admin:
        return ALL
    granted = closed(set(grants.get(repo.id, frozenset()))) if grants else frozenset()
    if not repo.active:
        return ALL if Scope.ADMIN in granted else frozenset()
    if repo.visibility in _OPEN_VISIBILITY:
        granted = granted | {Scope.READ}
    return granted


def account_client(settings: ServerSettings, forge: str) -> AccountClient | None:
    if forge == "github":
        return GitHubAccounts(settings.github_api_url)
    if forge == "gitea" and settings.gitea_url:
        return GiteaAccounts(settings.gitea_url)
    if forge == "gitlab":
        return GitLabAccounts(settings.gitlab_url)
    return None


def _scopes(names_: frozenset[str]) -> frozenset[Scope]:
    return closed({Scope(n) for n in names_})


def mirror_all(store: Store, client: AccountClient, user: User, forge: str, token: str) -> int:
    """Ask the forge for the user's permission on every registered repository of ``forge``
    and store it; the number of repositories asked. Called at login."""
    count = 0
    for repo in store.list_repos():
        if repo.forge != forge:
            continue
        try:
            found = client.permission(token, repo.owner, repo.name)
        except ForgeError as exc:
            log.warning("permission of %s on %s not refreshed: %s", user.login, repo.slug, exc)
            continue
        store.set_repo_permission(user.id, repo.id, _scopes(found), source="forge")
        count += 1
    return count


def refreshed(
    store: Store,
    settings: ServerSettings,
    user: User,
    repo: Repo,
    stored: Mapping[int, RepoPermission],
    now: int,
) -> frozenset[Scope] | None:
    """The user's fresh forge scopes on ``repo`` when the stored ones are missing or stale and
    the user has a token of that forge; None when nothing was asked (keep what is stored)."""
    if user.admin or repo.forge == "local":
        return None
    current = stored.get(repo.id)
    if current is not None and (
        current.source != "forge" or now - current.fetched < settings.permission_cache_seconds
    ):
        return None
    account = store.forge_account_of(user.id)
    client = account_client(settings, repo.forge)
    if account is None or account.forge != repo.forge or not account.access_token or not client:
        return None
    try:
        found = client.permission(account.access_token, repo.owner, repo.name)
    except ForgeError as exc:
        log.warning("permission of %s on %s not refreshed: %s", user.login, repo.slug, exc)
        return None
    scopes = _scopes(found)
    store.set_repo_permission(user.id, repo.id, scopes, source="forge")
    return scopes


def check_activation(settings: ServerSettings, owner: str, name: str) -> None:
    """``Forbidden`` unless ``owner/name`` matches ``BASTION_REPOSITORY_FILTER`` (when set)."""
    globs = names(settings.repository_filter)
    slug = f"{owner}/{name}"
    if globs and not any(fnmatchcase(slug, g) for g in globs):
        raise Forbidden(
            f"repository {slug} does not match BASTION_REPOSITORY_FILTER; it cannot be activated"
        )


class StreamAccess:
    """Which build events a live ``/api/stream`` subscriber may receive: those of repositories
    the rule above lets them read. The user and their stored permissions are read again every
    ``REFRESH`` seconds, so a grant taken away stops the events, and a blocked or deleted user's
    stream ends (``refresh`` returns False)."""

    REFRESH = 5.0

    def __init__(
        self, store: Store, user: User, grants: Mapping[int, frozenset[Scope]], *, admin: bool
    ) -> None:
        self._store = store
        self._user = user
        self._grants = dict(grants)
        self._admin = admin
        self._checked = 0.0

    def due(self, monotonic_now: float) -> bool:
        return monotonic_now - self._checked >= self.REFRESH

    def refresh(self, monotonic_now: float) -> bool:
        """Read the user and their permissions again; False when they may no longer listen."""
        self._checked = monotonic_now
        user = self._store.get_user(self._user.id)
        if user is None or not user.active:
            return False
        self._user = user
        self._admin = self._admin and user.admin
        self._grants = {r: p.scopes for r, p in self._store.repo_permissions(user.id).items()}
        return True

    def allows(self, repo_id: int, active: bool, visibility: str) -> bool:
        if self._admin:
            return True
        granted = closed(set(self._grants.get(repo_id, frozenset())))
        if not active:
            return Scope.ADMIN in granted
        return visibility in _OPEN_VISIBILITY or Scope.READ in granted
