"""API tokens and brute-force protection through a real server: named tokens shown once,
scopes that cannot be raised, expiry rules, rotation and revocation (one, a user's, everyone's),
and lockout of a source that guesses tokens (429 with Retry-After, an audit event, valid
tokens refused from that source too, X-Forwarded-For believed only from trusted proxies)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from tests.integration.server._support import Harness

from bastion.crypto import hash_token, new_token
from bastion.store.types import AuditQuery, Scope

DAY = 86400


def _create(api: httpx.Client, name: str, **body: object) -> httpx.Response:
    return api.post("/api/user/tokens", json={"name": name, **body})


def _events(server: Harness, kind: str) -> list[dict[str, object]]:
    found = server.ctx.store.list_audit_events(AuditQuery(kind=kind))
    return [{"kind": e.kind, "actor": e.actor, **e.detail} for e in reversed(found)]


def test_named_tokens_shown_once_listed_without_secret(server: Harness) -> None:
    alice = server.client(server.user_token("alice"))
    made = _create(alice, "laptop", scopes=["read", "write"])
    assert made.status_code == 201, made.text
    secret = made.json()["token"]
    assert made.json()["scopes"] == ["read", "write"]
    mine = server.client(secret)
    assert mine.get("/api/user").json()["login"] == "alice"

    listed = alice.get("/api/user/tokens").json()
    assert {t["name"] for t in listed} == {"cli", "laptop"}
    laptop = next(t for t in listed if t["name"] == "laptop")
    assert secret not in str(listed)
    assert laptop["last_used"] > 0  # the request above used it
    # The server's default, cut to the expiry of alice's token that made it (seconds older).
    assert laptop["created"] + 90 * DAY - 60 <= laptop["expires"] <= laptop["created"] + 90 * DAY
    again = _create(alice, "laptop")
    assert again.status_code == 409
    assert "laptop" in again.json()["message"]
    assert _create(alice, "bad/name").status_code == 400
    assert _create(alice, "x", scopes=["root"]).status_code == 400
    # Stored hashed: the secret is nowhere in the database, its hash is.
    assert server.ctx.store.find_token(hash_token(secret)) is not None
    created = _events(server, "token.created")[-1]
    assert (created["name"], created["by_token"], created["actor"]) == ("laptop", "cli", "alice")


def test_a_token_cannot_raise_its_scopes(server: Harness) -> None:
    admin = server.admin
    read_only = admin.post("/api/user/tokens", json={"name": "ro", "scopes": ["read"]}).json()
    ro = server.client(read_only["token"])
    assert ro.get("/api/repos").status_code == 200
    # An administrator's read token cannot write, nor administer.
    assert ro.post("/api/repos", json={"owner": "acme", "name": "x"}).status_code == 403
    assert ro.get("/api/users").status_code == 403
    # Nor mint itself a better token, nor rotate a better one into its hands.
    refused = _create(ro, "escalate", scopes=["read", "write"])
    assert refused.status_code == 403
    assert "scope" in refused.json()["message"]
    assert _create(admin, "full", scopes=["read", "write", "admin"]).status_code == 201
    assert ro.post("/api/user/tokens/full/rotate").status_code == 403
    assert _create(ro, "another-ro", scopes=["read"]).status_code == 201


def test_expiry_rules(make_server: Callable[..., Harness]) -> None:
    server = make_server(token_default_days=7, token_max_days=30)
    admin = server.admin
    week = _create(admin, "week").json()
    assert week["expires"] >= server.ctx.now() + 7 * DAY - 5
    too_long = _create(admin, "long", expires_in_days=31)
    assert too_long.status_code == 400
    assert "30 days" in too_long.json()["message"]
    never = _create(admin, "forever", never=True)
    assert never.status_code == 400
    assert "BASTION_TOKEN_ALLOW_NEVER" in never.json()["message"]
    # A token cannot make one that outlives it.
    short = server.client(week["token"])
    outlives = _create(short, "longer", expires_in_days=8)
    assert outlives.status_code == 400
    assert "outlives" in outlives.json()["message"]
    assert _create(short, "shorter", expires_in_days=6).status_code == 201
    # An expired token is refused, with the reason.
    store = server.ctx.store
    user = store.find_user("admin")
    assert user is not None
    expired = new_token("api")
    store.create_token(user.id, "old", hash_token(expired), (Scope.READ,), expires=1000)
    answer = server.client(expired).get("/api/user")
    assert answer.status_code == 401
    assert "expired" in answer.json()["message"]


def test_never_expiring_tokens_only_when_allowed(make_server: Callable[..., Harness]) -> None:
    server = make_server(token_allow_never=True)
    made = _create(server.admin, "forever", never=True)
    assert made.status_code == 201
    assert made.json()["expires"] == 0


def test_rotate_kills_the_old_secret(server: Harness) -> None:
    alice = server.client(server.user_token("alice"))
    first = _create(alice, "ci", scopes=["read"], expires_in_days=10).json()
    rotated = alice.post("/api/user/tokens/ci/rotate")
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert (body["name"], body["scopes"]) == ("ci", ["read"])
    assert body["token"] != first["token"]
    old = server.client(first["token"]).get("/api/user")
    assert old.status_code == 401
    assert server.client(body["token"]).get("/api/user").status_code == 200
    # The same lifetime, counted from now.
    assert body["expires"] >= first["expires"]
    assert [t["name"] for t in alice.get("/api/user/tokens").json()].count("ci") == 1
    assert alice.post("/api/user/tokens/nope/rotate").status_code == 404
    # A token may rotate itself (renewal) and the old secret dies with the answer.
    me = server.client(body["token"])
    renewed = me.post("/api/user/tokens/ci/rotate")
    assert renewed.status_code == 200
    assert me.get("/api/user").status_code == 401
    assert _events(server, "token.rotated")[-1]["name"] == "ci"


def test_revoke_one_a_users_and_drone_token_route(server: Harness) -> None:
    alice_token = server.user_token("alice")
    alice = server.client(alice_token)
    spare = _create(alice, "spare").json()["token"]
    assert alice.delete("/api/user/tokens/spare").status_code == 204
    assert server.client(spare).get("/api/user").status_code == 401
    assert alice.delete("/api/user/tokens/spare").status_code == 404
    # Drone's route again for the same user: a second name, not an error.
    again = server.admin.post("/api/users/alice/token")
    assert again.status_code == 200
    assert again.json()["name"] == "cli-2"
    names = [t["name"] for t in server.admin.get("/api/users/alice/tokens").json()]
    assert names == ["cli", "cli-2"]
    assert server.admin.delete("/api/users/alice/tokens/cli-2").status_code == 204
    gone = server.admin.delete("/api/users/alice/tokens")
    assert gone.json() == {"revoked": 1}
    assert alice.get("/api/user").status_code == 401
    assert _events(server, "token.revoked_user")[-1]["user"] == "alice"


def test_emergency_revoke_of_every_token(server: Harness) -> None:
    alice = server.client(server.user_token("alice"))
    bob = server.client(server.user_token("bob"))
    assert alice.post("/api/admin/tokens/revoke-all", json={}).status_code == 403
    kept = server.admin.post("/api/admin/tokens/revoke-all", json={"keep_mine": True})
    assert kept.status_code == 200
    assert kept.json()["revoked"] == 2
    assert alice.get("/api/user").status_code == 401
    assert bob.get("/api/user").status_code == 401
    assert server.admin.get("/api/user").status_code == 200
    fresh = _create(server.admin, "fresh").json()["token"]
    everyone = server.admin.post("/api/admin/tokens/revoke-all", json={})
    assert everyone.json()["revoked"] == 2  # the fresh one and the caller's own
    assert server.admin.get("/api/user").status_code == 401
    assert server.client(fresh).get("/api/user").status_code == 401
    events = _events(server, "token.revoked_everyone")
    assert [(e["revoked"], e["kept_mine"]) for e in events] == [(2, True), (2, False)]


def test_brute_force_on_tokens_locks_the_source(make_server: Callable[..., Harness]) -> None:
    server = make_server(auth_source_limit=5, auth_lockout_seconds=600)
    guesser = server.client()
    answers = [
        guesser.get("/api/user", headers={"Authorization": f"Bearer {new_token('api')}"})
        for _ in range(5)
    ]
    assert [a.status_code for a in answers] == [401] * 5
    locked = guesser.get("/api/user", headers={"Authorization": f"Bearer {new_token('api')}"})
    assert locked.status_code == 429
    assert 0 < int(locked.headers["Retry-After"]) <= 600
    # From that source even a valid token is refused the same way: a guess that worked would
    # otherwise show. (The trade-off: a user behind the same address waits too.)
    valid = server.admin.get("/api/user")
    assert (valid.status_code, valid.json()) == (locked.status_code, locked.json())
    # Changing X-Forwarded-For does not help: no proxy is trusted.
    spoofed = guesser.get(
        "/api/user",
        headers={
            "Authorization": f"Bearer {new_token('api')}",
            "X-Forwarded-For": "198.51.100.7",
        },
    )
    assert spoofed.status_code == 429
    [event] = _events(server, "auth.lockout")
    assert (event["locked"], event["source"], event["failures"]) == ("source", "127.0.0.1", 5)
    assert event["reason"] == "unknown token"
    # Revoked and expired tokens are no guesses: they do not count (checked in a new server).


def test_revoked_tokens_do_not_count_as_guesses(make_server: Callable[..., Harness]) -> None:
    server = make_server(auth_source_limit=3)
    old = _create(server.admin, "old").json()["token"]
    server.admin.delete("/api/user/tokens/old").raise_for_status()
    for _ in range(5):
        assert server.client(old).get("/api/user").status_code == 401
    assert server.admin.get("/api/user").status_code == 200
    assert _events(server, "auth.lockout") == []


def test_forwarded_for_from_a_trusted_proxy(make_server: Callable[..., Harness]) -> None:
    server = make_server(auth_source_limit=3, trusted_proxies="127.0.0.1/32")

    def guess(address: str) -> int:
        headers = {
            "Authorization": f"Bearer {new_token('api')}",
            "X-Forwarded-For": f"203.0.113.9, {address}",
        }
        return server.client().get("/api/user", headers=headers).status_code

    assert [guess("192.0.2.1") for _ in range(4)] == [401, 401, 401, 429]
    # Another client behind the same proxy is not locked; the proxy itself neither.
    assert guess("192.0.2.2") == 401
    assert server.admin.get("/api/user").status_code == 200
    [event] = _events(server, "auth.lockout")
    assert event["source"] == "192.0.2.1"
    # An administrator (from an address that is not locked) lifts the lockouts.
    lifted = server.admin.delete("/api/admin/lockouts")
    assert lifted.json() == {"lifted": 1}
    assert guess("192.0.2.1") == 401
    assert _events(server, "auth.unlocked")[-1]["lockouts"] == 1
