"""First-start and every-start chores: the bootstrap admin and the embedded runner's token.

* The user ``admin`` (a system administrator) always exists. Its bootstrap token lives in
  ``<data_dir>/admin.token`` (mode 0600); only its hash is in the database. The file is read
  on every start: a token found there that the database does not know is registered (so
  ``--dev`` keeps working after the database is deleted); when there is no file and the admin
  has no usable token, a new one is generated into the file. A token revoked in the database
  stays revoked.
* With an embedded runner, the runner ``embedded`` gets a fresh token on every start, written
  to ``<data_dir>/embedded-runner.token`` (0600); the previous one is revoked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from bastion.crypto import hash_token, new_token
from bastion.server.auth import ALL_SCOPES
from bastion.server.secret_files import read_secret_file, write_secret_file
from bastion.server.settings import ADMIN_TOKEN_FILE, EMBEDDED_RUNNER_TOKEN_FILE
from bastion.store.repository import Store

log = logging.getLogger("bastion.server")

ADMIN_LOGIN = "admin"
EMBEDDED_RUNNER = "embedded"


def _free_name(store: Store, user_id: int) -> str:
    # A user's live tokens have distinct names (store/token_store.py): an expired or replaced
    # bootstrap token may still hold "bootstrap".
    taken = {t.name for t in store.list_tokens(user_id, live=True)}
    name, n = "bootstrap", 1
    while name in taken:
        n += 1
        name = f"bootstrap-{n}"
    return name


@dataclass(frozen=True)
class AdminBootstrap:
    token_file: Path
    created_token: bool  # a new token was generated into token_file on this start


def ensure_admin(store: Store, data_dir: Path, *, now: int) -> AdminBootstrap:
    admin = store.find_user(ADMIN_LOGIN)
    if admin is None:
        admin = store.create_user(ADMIN_LOGIN, admin=True)
        log.info("created the bootstrap administrator %r", ADMIN_LOGIN)
    elif not admin.admin or not admin.active:
        log.warning(
            "user %r exists but is not an active administrator; leaving it as it is",
            ADMIN_LOGIN,
        )
    path = data_dir / ADMIN_TOKEN_FILE
    token = read_secret_file(path)
    if token is not None:
        found = store.find_token(hash_token(token))
        if found is None:
            store.create_token(admin.id, _free_name(store, admin.id), hash_token(token), ALL_SCOPES)
            log.info("registered the admin token from %s", path)
        elif found[0].revoked:
            log.warning("the token in %s was revoked; it does not work", path)
        return AdminBootstrap(path, created_token=False)
    usable = [
        t
        for t in store.list_tokens(admin.id)
        if not t.revoked and (t.expires == 0 or t.expires > now)
    ]
    if usable:
        return AdminBootstrap(path, created_token=False)
    token = new_token("api")
    write_secret_file(path, token)
    store.create_token(admin.id, _free_name(store, admin.id), hash_token(token), ALL_SCOPES)
    log.info("generated a token for %r into %s (mode 0600)", ADMIN_LOGIN, path)
    return AdminBootstrap(path, created_token=True)


def ensure_embedded_runner(store: Store, data_dir: Path) -> Path:
    """Register the runner ``embedded`` with a fresh token; returns the token file."""
    if store.find_runner(EMBEDDED_RUNNER) is not None:
        store.revoke_runner(EMBEDDED_RUNNER)
    token = new_token("runner")
    store.create_runner(EMBEDDED_RUNNER, hash_token(token))
    path = data_dir / EMBEDDED_RUNNER_TOKEN_FILE
    write_secret_file(path, token, replace=path.exists())
    log.info("embedded runner registered; its token is in %s (mode 0600)", path)
    return path
