"""The registry of encrypted columns, and re-keying them (``bastion secret rekey``).

Every column holding a ``SecretBox`` ciphertext is registered once, at the end of this module,
with how to rebuild the associated data (AAD) of a row from the row. A test fails when a binary
column of the models is not registered, and the rekey tests re-encrypt a real value of every
registered column (a wrong AAD function shows up as a failed row), so a new table of secrets
can be neither forgotten by the rotation nor registered wrongly.

``RekeyStore`` (a mixin of ``Store``) walks the registry. For each column it reads rows in
primary-key order, in batches of ``batch_size``, each batch one transaction that re-encrypts
under the current key every value not already there (format 1, or format 2 naming another
key). Each row is written with a compare-and-set on its old ciphertext, so a value changed
concurrently (necessarily under the current key) is left as the writer made it. Because a
batch commits or rolls back whole and the previous keys stay configured until the operator
removes them, an interruption at any point leaves every row decryptable, and running again
finishes the job: rows already under the current key are skipped. A row no key decrypts is
reported by id and left untouched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import CursorResult, inspect, select, update
from sqlalchemy.orm import Session

from bastion.crypto import DecryptError
from bastion.crypto.secretbox import blob_key_id
from bastion.store.approval_store import signing_key_aad
from bastion.store.identity_store import _verifier_aad, forge_token_aad
from bastion.store.models import (
    Base,
    ForgeAccountRow,
    LoginStateRow,
    RepoRow,
    RepoSecretRow,
    SharedSecretRow,
)
from bastion.store.secret_store import _filters_of, secret_aad
from bastion.store.types import RekeyReport

if TYPE_CHECKING:
    from bastion.crypto import SecretBox

DEFAULT_BATCH = 200
MAX_BATCH = 10_000
FORMAT_1 = "v1"  # the census label of values that name no key


@dataclass(frozen=True)
class EncryptedColumn:
    """A column of ciphertexts: its model, attribute name and the AAD of a row."""

    model: type[Base]
    column: str
    aad: Callable[[Any], bytes]

    @property
    def name(self) -> str:
        return f"{self.model.__tablename__}.{self.column}"


_REGISTRY: dict[str, EncryptedColumn] = {}


def register_encrypted_column(
    model: type[Base], column: str, aad: Callable[[Any], bytes]
) -> EncryptedColumn:
    """Add a column to the registry (once; registering the same name again replaces the
    entry, so a module reloaded by a test does not fail)."""
    if column not in inspect(model).columns:
        raise ValueError(f"{model.__tablename__} has no column {column!r}")
    entry = EncryptedColumn(model, column, aad)
    _REGISTRY[entry.name] = entry
    return entry


def encrypted_columns() -> list[EncryptedColumn]:
    """Every registered column, by name."""
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


class RekeyStore:
    """Census and re-encryption of every registered column (see the module docstring)."""

    if TYPE_CHECKING:
        _box: SecretBox

        def _tx(
            self, *, write: bool = False, conflict: str = ""
        ) -> AbstractContextManager[Session]: ...

        @staticmethod
        def _execute(session: Session, statement: Any) -> CursorResult[Any]: ...

    @property
    def current_key_id(self) -> str:
        """The id of the key new values are encrypted with (hex)."""
        return self._box.key_id

    def rekey_encrypted(
        self,
        *,
        dry_run: bool = False,
        batch_size: int = DEFAULT_BATCH,
        after_batch: Callable[[str, int], None] | None = None,
    ) -> RekeyReport:
        """Re-encrypt under the current key every value not under it; with ``dry_run`` only
        count rows per key id. ``after_batch(column, batches_so_far)`` runs after each
        committed batch (progress; tests interrupt there)."""
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch size must be 1 to {MAX_BATCH}, not {batch_size}")
        keys: dict[str, dict[str, int]] = {}
        rekeyed: dict[str, int] = {}
        failed: dict[str, list[int]] = {}
        batches = 0
        for column in encrypted_columns():
            census: Counter[str] = Counter()
            failures: list[int] = []
            rekeyed[column.name] = 0
            for done in self._rekey_batches(column, census, failures, dry_run, batch_size):
                rekeyed[column.name] += done
                batches += 1
                if after_batch is not None:
                    after_batch(column.name, batches)
            keys[column.name] = dict(sorted(census.items()))
            if failures:
                failed[column.name] = failures
        return RekeyReport(
            current_key_id=self._box.key_id,
            dry_run=dry_run,
            keys=keys,
            rekeyed=rekeyed,
            failed=failed,
            batches=batches,
        )

    def _rekey_batches(
        self,
        column: EncryptedColumn,
        census: Counter[str],
        failed: list[int],
        dry_run: bool,
        batch_size: int,
    ) -> Iterator[int]:
        """One committed transaction per batch; yields the rows it re-encrypted."""
        model = column.model
        (key,) = inspect(model).primary_key
        value = getattr(model, column.column)
        last: Any = None
        while True:
            query = select(model).where(value.is_not(None))
            if last is not None:
                query = query.where(key > last)
            with self._tx(write=not dry_run) as session:
                rows = list(session.scalars(query.order_by(key).limit(batch_size)))
                if not rows:
                    return
                done = 0
                for row in rows:
                    row_id = getattr(row, key.name)
                    blob = bytes(getattr(row, column.column))
                    census[blob_key_id(blob) or FORMAT_1] += 1
                    if dry_run or not self._box.needs_rekey(blob):
                        continue
                    try:
                        fresh = self._box.rekey(blob, column.aad(row))
                    except DecryptError:
                        failed.append(row_id)
                        continue
                    # Compare-and-set: a concurrent writer (current key already) wins.
                    result = self._execute(
                        session,
                        update(model)
                        .where(key == row_id, value == blob)
                        .values({column.column: fresh}),
                    )
                    done += result.rowcount
                last = getattr(rows[-1], key.name)
            yield done


# -- the registry ------------------------------------------------------------------------------
# One line per encrypted column. The AAD functions are those the writers use; the webhook's is
# spelled here (Store.set_webhook_secret's "repo-webhook:<id>") because repository.py imports
# this module, and the rekey tests would report its rows as failed if the two ever differed.

register_encrypted_column(RepoRow, "webhook_secret", lambda row: f"repo-webhook:{row.id}".encode())
register_encrypted_column(RepoRow, "signing_key", lambda row: signing_key_aad(row.id))
register_encrypted_column(
    RepoSecretRow,
    "value",
    lambda row: secret_aad("repo", str(row.repo_id), row.name, _filters_of(row)),
)
register_encrypted_column(
    SharedSecretRow,
    "value",
    lambda row: secret_aad(row.scope, row.namespace, row.name, _filters_of(row)),
)
register_encrypted_column(ForgeAccountRow, "access_token", lambda row: forge_token_aad(row.user_id))
register_encrypted_column(LoginStateRow, "verifier", lambda row: _verifier_aad(row.hash))
