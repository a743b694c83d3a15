"""Cost per stage of decrypting the secrets a stage gets (issue 5), against baselines measured
in the same run.

A repository holds ``--secrets`` secrets (10 and 200 by default), stored through ``Store``
while the server holds a keyring: half were written under a previous key (so decryption picks
the key by the id in the blob), half under the current one, all in format 2. A stage asking
for all of them costs one ``Store.get_repo_secrets(repo, names)``: one query, then one
AES-256-GCM decryption per row with its associated data. Measured, per stage (median of
``--repeat`` runs, after one warm-up):

* ``store``: ``get_repo_secrets`` — what the server pays when it hands a stage its secrets;
* ``sql``: the same rows and columns read with the same WHERE clause and no decryption (plain
  SQLAlchemy Core on the store's engine, no ORM objects) — the baseline a store without
  encryption would pay;
* ``keyring``: ``SecretBox.decrypt`` of the same blobs in memory (key lookup by id, AAD);
* ``aesgcm``: ``AESGCM.decrypt`` of the same blobs with the right key already chosen — the
  cryptography alone.

Prints microseconds per stage, the ratios store/sql and keyring/aesgcm, and what the store
adds per secret over the plain read ((store - sql) / secrets: ORM rows and decryption).
Run: ``.venv/bin/python bench/secret_decrypt.py`` (``--database-url postgresql+psycopg://...``
for PostgreSQL; a temporary SQLite file by default).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select

from bastion.crypto import SecretBox
from bastion.crypto.secretbox import KEY_ID_BYTES, NONCE_BYTES, blob_key_id, key_id
from bastion.store import Store
from bastion.store.models import RepoSecretRow

CURRENT = os.urandom(32)
PREVIOUS = os.urandom(32)


def measure(run: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``run()`` over ``repeat`` runs, after one warm-up run."""
    run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench(url: str, count: int, repeat: int) -> dict[str, float]:
    with Store(url, secret_key=PREVIOUS) as old:
        old.migrate()
        repo = old.create_repo("bench", f"r{count}")
        for i in range(0, count, 2):
            old.set_repo_secret(repo.id, f"secret_{i:04d}", os.urandom(24).hex())
    with Store(url, secret_key=CURRENT, previous_keys=[PREVIOUS]) as store:
        for i in range(1, count, 2):
            store.set_repo_secret(repo.id, f"secret_{i:04d}", os.urandom(24).hex())
        names = [f"secret_{i:04d}" for i in range(count)]
        plain = store.get_repo_secrets(repo.id, names)
        assert len(plain) == count
        engine = store._engine  # the same engine and pool as the store's own reads
        table = RepoSecretRow.__table__
        query = select(table).where(table.c.repo_id == repo.id, table.c.name.in_(sorted(names)))

        def sql_read() -> object:
            with engine.connect() as conn:
                return conn.execute(query).all()

        rows = sql_read()
        assert isinstance(rows, list)
        blobs = [(bytes(row.value), f"repo:{repo.id}:{row.name}".encode()) for row in rows]
        ids = {blob_key_id(b) for b, _ in blobs}
        assert ids == {key_id(CURRENT).hex(), key_id(PREVIOUS).hex()}, ids
        box = SecretBox(CURRENT, [PREVIOUS])
        ciphers = {key_id(CURRENT): AESGCM(CURRENT), key_id(PREVIOUS): AESGCM(PREVIOUS)}
        header = 1 + KEY_ID_BYTES

        def keyring() -> object:
            return [box.decrypt(b, aad) for b, aad in blobs]

        def aesgcm() -> object:
            return [
                ciphers[b[1:header]].decrypt(
                    b[header : header + NONCE_BYTES], b[header + NONCE_BYTES :], b[:header] + aad
                )
                for b, aad in blobs
            ]

        assert sorted(v.decode() for v in aesgcm()) == sorted(plain.values())  # type: ignore[attr-defined]
        return {
            "store": measure(lambda: store.get_repo_secrets(repo.id, names), repeat),
            "sql": measure(sql_read, repeat),
            "keyring": measure(keyring, repeat),
            "aesgcm": measure(aesgcm, repeat),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secrets", type=int, nargs="+", default=[10, 200])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        print(f"database: {url.split('://', 1)[0]}; median of {args.repeat} runs per stage")
        header = (
            f"{'secrets':>7}  {'store µs':>9}  {'sql µs':>8}  {'store/sql':>9}  "
            f"{'keyring µs':>10}  {'aesgcm µs':>9}  {'keyring/aesgcm':>14}  {'extra µs/secret':>15}"
        )
        print(header)
        for count in args.secrets:
            r = bench(url, count, args.repeat)
            per_secret = (r["store"] - r["sql"]) / count * 1e6
            print(
                f"{count:>7}  {r['store'] * 1e6:>9.0f}  {r['sql'] * 1e6:>8.0f}  "
                f"{r['store'] / r['sql']:>9.2f}  {r['keyring'] * 1e6:>10.0f}  "
                f"{r['aesgcm'] * 1e6:>9.0f}  {r['keyring'] / r['aesgcm']:>14.2f}  "
                f"{per_secret:>15.1f}"
            )


if __name__ == "__main__":
    main()
