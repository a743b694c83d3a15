"""The bootstrap admin's token under unique token names: a token file replaced while the old
bootstrap token is still live registers the new one under a free name (no start failure)."""

from __future__ import annotations

from pathlib import Path

from bastion.crypto import hash_token, new_token
from bastion.server.bootstrap import ensure_admin
from bastion.store import Store


def test_a_replaced_token_file_is_registered_under_a_free_name(
    store: Store, tmp_path: Path
) -> None:
    first = ensure_admin(store, tmp_path, now=1000)
    assert first.created_token
    replacement = new_token("api")
    first.token_file.write_text(replacement + "\n")
    ensure_admin(store, tmp_path, now=2000)
    admin = store.find_user("admin")
    assert admin is not None
    names = [t.name for t in store.list_tokens(admin.id, live=True)]
    assert names == ["bootstrap", "bootstrap-2"]
    assert store.find_token(hash_token(replacement)) is not None
