"""Who may log in through a forge, as which user, and whether they are an administrator.

Registration is closed. A forge account logs in as the user it is linked to; an account not
linked yet is linked to the user of the same login that an administrator created (not a machine
account, not linked to another forge account, and not an administrator unless
``BASTION_ADMINS`` names it), or, failing that, a user is created only if the login is in
``BASTION_ADMINS`` or the account belongs to an organisation of ``BASTION_USER_FILTER``. A
blocked user stays out; with ``BASTION_MIN_ACCOUNT_AGE_DAYS`` a forge account younger than that
is refused (an account the forge gives no date for is too).

When ``BASTION_ADMINS`` is set it decides, at every forge login, whether the user is a system
administrator: listed logins are promoted, others demoted — except the last active
administrator, who is kept (the server must not lock itself out; the refusal is logged).
Every promotion and demotion is an audit event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bastion.scm.accounts import ForgeUser
from bastion.server.errors import Forbidden
from bastion.server.services.audit import AuditLog
from bastion.server.settings import ServerSettings
from bastion.store.errors import Conflict
from bastion.store.repository import Store
from bastion.store.types import User

log = logging.getLogger("bastion.server")
DAY = 86400


def names(text: str) -> list[str]:
    """A comma-separated setting as its non-empty, trimmed items."""
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass(frozen=True)
class Admitted:
    user: User
    created: bool


def admit(
    store: Store,
    settings: ServerSettings,
    audit: AuditLog,
    forge: str,
    account: ForgeUser,
    orgs: list[str],
    now: int,
) -> Admitted:
    """The user this forge account logs in as; ``Forbidden`` (with the reason) otherwise."""
    if not account.id or not account.login:
        raise Forbidden(f"{forge} did not say who this account is")
    minimum = settings.min_account_age_days * DAY
    if minimum and (not account.created or now - account.created < minimum):
        raise Forbidden(
            f"this {forge} account is younger than {settings.min_account_age_days} days "
            "(BASTION_MIN_ACCOUNT_AGE_DAYS)"
        )
    admins = {a.lower() for a in names(settings.admins)}
    user, created = _user_for(store, settings, forge, account, orgs, admins)
    if not user.active:
        raise Forbidden(f"the account {user.login} is blocked")
    if admins:
        user = _apply_admins(store, audit, user, account.login.lower() in admins)
    return Admitted(user, created)


def _user_for(
    store: Store,
    settings: ServerSettings,
    forge: str,
    account: ForgeUser,
    orgs: list[str],
    admins: set[str],
) -> tuple[User, bool]:
    linked = store.find_forge_account(forge, account.id)
    if linked is not None:
        user = store.get_user(linked.user_id)
        if user is not None:
            return user, False
    existing = store.find_user(account.login)
    if existing is not None:
        other = store.forge_account_of(existing.id)
        taken = other is not None and (other.forge, other.forge_user_id) != (forge, account.id)
        # An administrator made without a forge account (the bootstrap admin) is not handed
        # to whoever registers that login on a forge, unless BASTION_ADMINS names it.
        unlisted_admin = existing.admin and account.login.lower() not in admins
        if existing.machine or taken or unlisted_admin:
            raise Forbidden(f"the user {account.login} cannot log in through {forge}")
        return existing, False
    allowed = {o.lower() for o in names(settings.user_filter)}
    if account.login.lower() not in admins and not allowed & {o.lower() for o in orgs}:
        raise Forbidden(
            "registration is closed: ask an administrator to add you "
            "(or to list your organisation in BASTION_USER_FILTER)"
        )
    try:
        return store.create_user(account.login, email=account.email), True
    except Conflict:  # created by a concurrent login of the same account
        user = store.find_user(account.login)
        if user is None:
            raise
        return user, False


def _apply_admins(store: Store, audit: AuditLog, user: User, listed: bool) -> User:
    if user.admin == listed:
        return user
    if not listed:
        others = [u for u in store.list_users() if u.admin and u.active and u.id != user.id]
        if not others:
            log.warning(
                "%s is not in BASTION_ADMINS but is the last active administrator; kept",
                user.login,
            )
            return user
    updated = store.update_user(user.login, admin=listed)
    audit.record(
        "user.admin_granted" if listed else "user.admin_revoked",
        actor=user.login,
        detail={"user": user.login, "reason": "BASTION_ADMINS at login"},
    )
    return updated
