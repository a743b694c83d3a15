"""The store's secrets: repository, organisation and global, encrypted, with their filters.

``SecretStore`` is a mixin of ``Store`` (``repository.py``) and uses its transactions and its
``SecretBox``. Values are AES-256-GCM ciphertexts whose associated data (AAD) names what the
value belongs to and who may have it, so a row edited in the database fails to decrypt rather
than reaching anyone new:

* a repository secret without filters keeps the AAD of revisions 0001 / 0002
  (``repo:<repo_id>:<name>``, ``repo-pr:...`` with the pull_request flag), so secrets written
  before revision 0003 still decrypt and a downgrade keeps them;
* every other secret (a repository secret with a filter, every organisation and global one)
  has the AAD ``["bastion-secret/2", scope, owner, name, pull_request, branches, events,
  images]`` in canonical JSON, ``owner`` being the repository id, the namespace or ``""``.

Which AAD a row is decrypted with follows from the row (any filter set → the second form),
never from trying both: clearing the filters of a filtered row, or adding some to an
unfiltered one, makes it undecryptable. Only ``SecretRecord`` carries a ciphertext out of
this module, for :meth:`SecretStore.open_secret`; the rest returns metadata.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import CursorResult, bindparam, delete, exists, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from bastion.crypto import DecryptError
from bastion.store.errors import StoreError
from bastion.store.models import RepoRow, RepoSecretRow, SharedSecretRow
from bastion.store.types import RepoSecret, SecretFilters, SharedSecret

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

    from bastion.crypto import SecretBox

SHARED_SCOPES = ("org", "global")


class UndecryptableSecret(StoreError):  # noqa: N818 - reads as what the caller met
    """A stored secret's value does not decrypt under its row's AAD and the server's keys
    (the row was edited or moved, or the key changed). ``name`` is the secret's."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class SecretRecord:
    """One stored secret as delivery needs it: where it lives, its filters, and its sealed
    value (opened only by :meth:`SecretStore.open_secret`, for a stage entitled to it)."""

    scope: str  # "repo", "org" or "global"
    owner: str  # repository id (as text), namespace, or ""
    name: str
    id: int
    filters: SecretFilters
    sealed: bytes = field(repr=False)


def secret_aad(scope: str, owner: str, name: str, filters: SecretFilters) -> bytes:
    """The associated data a secret's value is bound to (see the module docstring)."""
    if scope == "repo" and not (filters.branches or filters.events or filters.images):
        return f"{'repo-pr' if filters.pull_request else 'repo'}:{owner}:{name}".encode()
    doc = [
        "bastion-secret/2",
        scope,
        owner,
        name,
        filters.pull_request,
        sorted(filters.branches),
        sorted(filters.events),
        sorted(filters.images),
    ]
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode()


def normal_filters(filters: SecretFilters) -> SecretFilters:
    """Sorted, without duplicates or empty entries: the form stored and bound into the AAD."""

    def clean(values: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted({v.strip() for v in values if v.strip()}))

    return SecretFilters(
        branches=clean(filters.branches),
        events=clean(filters.events),
        images=clean(filters.images),
        pull_request=filters.pull_request,
    )


_HAS_SECRETS = select(
    or_(
        exists().where(RepoSecretRow.repo_id == bindparam("p_repo_id")),
        exists().where(
            or_(
                SharedSecretRow.scope == "global",
                (SharedSecretRow.scope == "org")
                & (SharedSecretRow.namespace == bindparam("p_namespace")),
            )
        ),
    )
)


class SecretStore:
    """Secrets in ``repo_secrets`` and ``shared_secrets`` (migration 0003)."""

    if TYPE_CHECKING:
        _box: SecretBox

        def _tx(
            self, *, write: bool = False, conflict: str = ""
        ) -> AbstractContextManager[Session]: ...

        def _now(self) -> int: ...

        def _core(self, *, write: bool = False) -> AbstractContextManager[Connection]: ...

        def _insert(self, model: Any) -> postgresql.Insert | sqlite.Insert: ...

        @staticmethod
        def _execute(session: Session, statement: Any) -> CursorResult[Any]: ...

        @staticmethod
        def _repo_by_id(session: Session, repo_id: int) -> RepoRow: ...

    # -- repository secrets --------------------------------------------------------------------

    def set_repo_secret(
        self,
        repo_id: int,
        name: str,
        value: str,
        *,
        pull_request: bool = False,
        branches: Sequence[str] = (),
        events: Sequence[str] = (),
        images: Sequence[str] = (),
    ) -> RepoSecret:
        """Create or replace a secret, encrypted and bound to the repository, its name, the
        ``pull_request`` flag (pull_request builds may receive it; never a fork's) and its
        filters. Returns what is known of it apart from the value."""
        _require_name(name)
        filters = normal_filters(
            SecretFilters(tuple(branches), tuple(events), tuple(images), pull_request)
        )
        blob = self._seal("repo", str(repo_id), name, filters, value)
        with self._tx(write=True) as session:
            self._repo_by_id(session, repo_id)
            now = self._now()
            columns = _filter_columns(filters)
            insert = self._insert(RepoSecretRow).values(
                repo_id=repo_id,
                name=name,
                value=blob,
                created=now,
                updated=now,
                rotated=now,
                **columns,
            )
            session.execute(
                insert.on_conflict_do_update(
                    index_elements=[RepoSecretRow.repo_id, RepoSecretRow.name],
                    set_={"value": blob, "updated": now, "rotated": now, **columns},
                )
            )
            return _repo_secret(self._secret_row(session, repo_id, name))

    def update_repo_secret(
        self,
        repo_id: int,
        name: str,
        *,
        value: str | None = None,
        pull_request: bool | None = None,
        branches: Sequence[str] | None = None,
        events: Sequence[str] | None = None,
        images: Sequence[str] | None = None,
    ) -> RepoSecret | None:
        """Change what is given (None: keep); the value is re-encrypted under the new filters.
        None when the repository has no such secret."""
        with self._tx(write=True) as session:
            row = session.scalar(_repo_query(repo_id, name).with_for_update())
            if row is None:
                return None
            old = _filters_of(row)
            plain = value if value is not None else self._open("repo", str(repo_id), row, old)
            new = _changed(old, pull_request, branches, events, images)
            row.value = self._seal("repo", str(repo_id), name, new, plain)
            for column, stored in _filter_columns(new).items():
                setattr(row, column, stored)
            row.updated = self._now()
            if value is not None:
                row.rotated = row.updated
            session.flush()
            return _repo_secret(row)

    def get_repo_secret(self, repo_id: int, name: str) -> str | None:
        """The decrypted secret, or None when the repository has no such secret."""
        with self._tx() as session:
            row = session.scalar(_repo_query(repo_id, name))
            if row is None:
                return None
            return self._open("repo", str(repo_id), row, _filters_of(row))

    def get_repo_secrets(
        self, repo_id: int, names: Iterable[str] | None = None, *, pull_request_only: bool = False
    ) -> dict[str, str]:
        """Several secrets in one query: those of ``names`` that exist (all when None); with
        ``pull_request_only``, only those whose ``pull_request`` flag is set. Filters are not
        applied here: delivery decides with them (``server.services.secrets``)."""
        query = select(RepoSecretRow).where(RepoSecretRow.repo_id == repo_id)
        if names is not None:
            wanted = sorted(set(names))
            if not wanted:
                return {}
            query = query.where(RepoSecretRow.name.in_(wanted))
        if pull_request_only:
            query = query.where(RepoSecretRow.pull_request.is_(True))
        with self._tx() as session:
            rows = list(session.scalars(query))
            return {r.name: self._open("repo", str(repo_id), r, _filters_of(r)) for r in rows}

    def list_repo_secrets(self, repo_id: int) -> list[str]:
        """The names of the repository's secrets (never their values)."""
        with self._tx() as session:
            names = session.scalars(
                select(RepoSecretRow.name)
                .where(RepoSecretRow.repo_id == repo_id)
                .order_by(RepoSecretRow.name)
            )
            return list(names)

    def describe_repo_secrets(self, repo_id: int) -> list[RepoSecret]:
        """What is known of each of the repository's secrets apart from its value, by name."""
        with self._tx() as session:
            rows = session.scalars(
                select(RepoSecretRow)
                .where(RepoSecretRow.repo_id == repo_id)
                .order_by(RepoSecretRow.name)
            )
            return [_repo_secret(row) for row in rows]

    def describe_repo_secret(self, repo_id: int, name: str) -> RepoSecret | None:
        """What is known of one secret apart from its value; None when there is none."""
        with self._tx() as session:
            row = session.scalar(_repo_query(repo_id, name))
            return None if row is None else _repo_secret(row)

    def delete_repo_secret(self, repo_id: int, name: str) -> bool:
        """Delete a secret; False when there was none of that name."""
        with self._tx(write=True) as session:
            result = self._execute(
                session,
                delete(RepoSecretRow).where(
                    RepoSecretRow.repo_id == repo_id, RepoSecretRow.name == name
                ),
            )
            return result.rowcount > 0

    # -- organisation and global secrets -------------------------------------------------------

    def set_shared_secret(
        self, scope: str, namespace: str, name: str, value: str, filters: SecretFilters
    ) -> SharedSecret:
        """Create or replace an organisation (``scope="org"``) or global (``"global"``,
        namespace ``""``) secret."""
        _require_scope(scope, namespace)
        _require_name(name)
        filters = normal_filters(filters)
        blob = self._seal(scope, namespace, name, filters, value)
        with self._tx(write=True) as session:
            now = self._now()
            columns = _filter_columns(filters)
            insert = self._insert(SharedSecretRow).values(
                scope=scope,
                namespace=namespace,
                name=name,
                value=blob,
                created=now,
                updated=now,
                rotated=now,
                **columns,
            )
            session.execute(
                insert.on_conflict_do_update(
                    index_elements=[
                        SharedSecretRow.scope,
                        SharedSecretRow.namespace,
                        SharedSecretRow.name,
                    ],
                    set_={"value": blob, "updated": now, "rotated": now, **columns},
                )
            )
            row = session.scalars(_shared_query(scope, namespace, name)).one()
            return _shared_secret(row)

    def update_shared_secret(
        self,
        scope: str,
        namespace: str,
        name: str,
        *,
        value: str | None = None,
        pull_request: bool | None = None,
        branches: Sequence[str] | None = None,
        events: Sequence[str] | None = None,
        images: Sequence[str] | None = None,
    ) -> SharedSecret | None:
        """As :meth:`update_repo_secret`, for an organisation or global secret."""
        _require_scope(scope, namespace)
        with self._tx(write=True) as session:
            row = session.scalar(_shared_query(scope, namespace, name).with_for_update())
            if row is None:
                return None
            old = _filters_of(row)
            plain = value if value is not None else self._open(scope, namespace, row, old)
            new = _changed(old, pull_request, branches, events, images)
            row.value = self._seal(scope, namespace, name, new, plain)
            for column, stored in _filter_columns(new).items():
                setattr(row, column, stored)
            row.updated = self._now()
            if value is not None:
                row.rotated = row.updated
            session.flush()
            return _shared_secret(row)

    def get_shared_secret(self, scope: str, namespace: str, name: str) -> str | None:
        """The decrypted value, or None when there is no such secret."""
        _require_scope(scope, namespace)
        with self._tx() as session:
            row = session.scalar(_shared_query(scope, namespace, name))
            return None if row is None else self._open(scope, namespace, row, _filters_of(row))

    def describe_shared_secrets(self, scope: str, namespace: str) -> list[SharedSecret]:
        """The secrets of one namespace (or the global ones), by name, without values."""
        _require_scope(scope, namespace)
        with self._tx() as session:
            rows = session.scalars(
                select(SharedSecretRow)
                .where(SharedSecretRow.scope == scope, SharedSecretRow.namespace == namespace)
                .order_by(SharedSecretRow.name)
            )
            return [_shared_secret(r) for r in rows]

    def describe_shared_secret(self, scope: str, namespace: str, name: str) -> SharedSecret | None:
        _require_scope(scope, namespace)
        with self._tx() as session:
            row = session.scalar(_shared_query(scope, namespace, name))
            return None if row is None else _shared_secret(row)

    def delete_shared_secret(self, scope: str, namespace: str, name: str) -> bool:
        _require_scope(scope, namespace)
        with self._tx(write=True) as session:
            result = self._execute(
                session,
                delete(SharedSecretRow).where(
                    SharedSecretRow.scope == scope,
                    SharedSecretRow.namespace == namespace,
                    SharedSecretRow.name == name,
                ),
            )
            return result.rowcount > 0

    # -- delivery ------------------------------------------------------------------------------

    def has_secrets_for(self, repo_id: int, namespace: str) -> bool:
        """Whether any scope holds a secret a build of this repository could receive. Asked
        for every stage leased: a prebuilt statement on a plain connection (see
        ``store/_hot.py`` for why), not an ORM session."""
        with self._core() as connection:
            found = connection.execute(
                _HAS_SECRETS, {"p_repo_id": repo_id, "p_namespace": namespace}
            ).scalar()
        return bool(found)

    def find_secrets(
        self, repo_id: int, namespace: str, names: Iterable[str] | None
    ) -> dict[str, SecretRecord]:
        """For each of ``names`` (every name when None), the most specific stored secret:
        the repository's, else the namespace's, else the global one. Sealed: nothing is
        decrypted here."""
        wanted = None if names is None else sorted(set(names))
        if wanted == []:
            return {}
        repo_q = select(RepoSecretRow).where(RepoSecretRow.repo_id == repo_id)
        shared_q = select(SharedSecretRow).where(
            or_(
                SharedSecretRow.scope == "global",
                (SharedSecretRow.scope == "org") & (SharedSecretRow.namespace == namespace),
            )
        )
        if wanted is not None:
            repo_q = repo_q.where(RepoSecretRow.name.in_(wanted))
            shared_q = shared_q.where(SharedSecretRow.name.in_(wanted))
        found: dict[str, SecretRecord] = {}
        with self._tx() as session:
            # Global first, then org, then repository: the more specific overwrites.
            shared = sorted(session.scalars(shared_q), key=lambda r: r.scope != "global")
            for s in shared:
                found[s.name] = SecretRecord(
                    s.scope, s.namespace, s.name, s.id, _filters_of(s), s.value
                )
            for r in session.scalars(repo_q):
                found[r.name] = SecretRecord(
                    "repo", str(repo_id), r.name, r.id, _filters_of(r), r.value
                )
        return found

    def open_secret(self, record: SecretRecord) -> str:
        """The value of ``record``; ``StoreError`` when its AAD does not match (an edited
        row, a moved ciphertext, another key)."""
        return self._unseal(record.scope, record.owner, record.name, record.filters, record.sealed)

    def mark_secrets_used(self, records: Iterable[SecretRecord], build: str) -> None:
        """Record that ``build`` ("owner/name#number") received these secrets now."""
        repo_ids = sorted({r.id for r in records if r.scope == "repo"})
        shared_ids = sorted({r.id for r in records if r.scope != "repo"})
        if not repo_ids and not shared_ids:
            return
        values = {"last_used": self._now(), "last_build": build[: 2 * 255 + 16]}
        with self._tx(write=True) as session:
            if repo_ids:
                self._execute(
                    session,
                    update(RepoSecretRow).where(RepoSecretRow.id.in_(repo_ids)).values(**values),
                )
            if shared_ids:
                self._execute(
                    session,
                    update(SharedSecretRow)
                    .where(SharedSecretRow.id.in_(shared_ids))
                    .values(**values),
                )

    # -- sealing -------------------------------------------------------------------------------

    def _seal(self, scope: str, owner: str, name: str, filters: SecretFilters, value: str) -> bytes:
        return self._box.encrypt(value.encode("utf-8"), secret_aad(scope, owner, name, filters))

    def _open(
        self, scope: str, owner: str, row: RepoSecretRow | SharedSecretRow, filters: SecretFilters
    ) -> str:
        return self._unseal(scope, owner, row.name, filters, row.value)

    def _unseal(
        self, scope: str, owner: str, name: str, filters: SecretFilters, blob: bytes
    ) -> str:
        try:
            return self._box.decrypt(blob, secret_aad(scope, owner, name, filters)).decode("utf-8")
        except DecryptError as exc:
            where = {"repo": f"repository {owner}", "org": f"organisation {owner!r}"}.get(
                scope, "the global scope"
            )
            raise UndecryptableSecret(
                name,
                f"secret {name!r} of {where} cannot be decrypted (was the server's secret key "
                f"changed, or the database edited?): {exc}",
            ) from exc

    @staticmethod
    def _secret_row(session: Session, repo_id: int, name: str) -> RepoSecretRow:
        row: RepoSecretRow = session.scalars(_repo_query(repo_id, name)).one()
        return row


def _repo_query(repo_id: int, name: str) -> Any:
    return select(RepoSecretRow).where(RepoSecretRow.repo_id == repo_id, RepoSecretRow.name == name)


def _shared_query(scope: str, namespace: str, name: str) -> Any:
    return select(SharedSecretRow).where(
        SharedSecretRow.scope == scope,
        SharedSecretRow.namespace == namespace,
        SharedSecretRow.name == name,
    )


def _filters_of(row: RepoSecretRow | SharedSecretRow) -> SecretFilters:
    return SecretFilters(
        branches=tuple(row.branches or ()),
        events=tuple(row.events or ()),
        images=tuple(row.images or ()),
        pull_request=row.pull_request,
    )


def _filter_columns(filters: SecretFilters) -> dict[str, Any]:
    return {
        "pull_request": filters.pull_request,
        "branches": list(filters.branches),
        "events": list(filters.events),
        "images": list(filters.images),
    }


def _changed(
    old: SecretFilters,
    pull_request: bool | None,
    branches: Sequence[str] | None,
    events: Sequence[str] | None,
    images: Sequence[str] | None,
) -> SecretFilters:
    new = replace(
        old,
        pull_request=old.pull_request if pull_request is None else pull_request,
        branches=old.branches if branches is None else tuple(branches),
        events=old.events if events is None else tuple(events),
        images=old.images if images is None else tuple(images),
    )
    return normal_filters(new)


def _repo_secret(row: RepoSecretRow) -> RepoSecret:
    return RepoSecret(
        id=row.id,
        repo_id=row.repo_id,
        name=row.name,
        pull_request=row.pull_request,
        created=row.created,
        updated=row.updated,
        branches=tuple(row.branches or ()),
        events=tuple(row.events or ()),
        images=tuple(row.images or ()),
        last_used=row.last_used,
        last_build=row.last_build,
        rotated=row.rotated or row.updated,
    )


def _shared_secret(row: SharedSecretRow) -> SharedSecret:
    return SharedSecret(
        id=row.id,
        scope=row.scope,
        namespace=row.namespace,
        name=row.name,
        filters=_filters_of(row),
        created=row.created,
        updated=row.updated,
        last_used=row.last_used,
        last_build=row.last_build,
        rotated=row.rotated or row.updated,
    )


def _require_name(value: str) -> None:
    if not value or len(value) > 255:
        raise ValueError(f"secret name must be 1 to 255 characters, not {len(value)}")


def _require_scope(scope: str, namespace: str) -> None:
    if scope not in SHARED_SCOPES:
        raise ValueError(f"secret scope must be org or global here, not {scope!r}")
    if (scope == "global") != (namespace == ""):
        raise ValueError("a global secret has no namespace; an organisation secret needs one")
    if len(namespace) > 255:
        raise ValueError("a namespace is at most 255 characters")
