"""The pure rules of identity: where ``next`` may lead, the repository scope rule, cookies."""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path

import pytest

from bastion.server.errors import Unavailable
from bastion.server.identity.oauth import begin, providers, safe_next
from bastion.server.identity.permissions import closed, scopes_for
from bastion.server.identity.sessions import secure_cookies, session_cookie_name
from bastion.server.settings import ServerSettings
from bastion.store.types import Repo, Scope, User

R, W, A = Scope.READ, Scope.WRITE, Scope.ADMIN
USER = User(1, "u", "", False, True, False, 0, 0)
ADMIN = replace(USER, admin=True)


def repo(**changes: object) -> Repo:
    base = Repo.__new__(Repo)
    fields = dict.fromkeys(Repo.__dataclass_fields__)
    fields.update(id=7, owner="acme", name="web", active=True, visibility="private")
    fields.update(changes)
    for key, value in fields.items():
        object.__setattr__(base, key, value)
    return base


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/acme/web/builds/3?x=1", "/acme/web/builds/3?x=1"),
        ("/", "/"),
        ("", "/"),
        (None, "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
        ("javascript:alert(1)", "/"),
        ("relative/path", "/"),
        ("/" + "a" * 3000, "/"),
    ],
)
def test_next_stays_on_the_server(given: str | None, kept: str) -> None:
    assert safe_next(given) == kept


def test_scope_rule() -> None:
    private = repo()
    assert scopes_for(ADMIN, private) == {R, W, A}
    assert scopes_for(USER, private) == frozenset()
    assert scopes_for(USER, private, {7: frozenset({W})}) == {R, W}
    assert scopes_for(USER, private, {8: frozenset({A})}) == frozenset()
    assert scopes_for(USER, repo(visibility="public")) == {R}
    assert scopes_for(USER, repo(visibility="internal")) == {R}
    inactive = repo(active=False, visibility="public")
    assert scopes_for(USER, inactive) == frozenset()
    assert scopes_for(USER, inactive, {7: frozenset({W})}) == frozenset()
    assert scopes_for(USER, inactive, {7: frozenset({A})}) == {R, W, A}
    assert closed({A}) == {R, W, A}


def _settings(tmp_path: Path, **values: object) -> ServerSettings:
    return ServerSettings(
        data_dir=tmp_path,
        rpc_secret=secrets.token_hex(32),
        database_secret=secrets.token_hex(32),
        **values,
    )


def test_cookies_are_secure_except_for_a_dev_server_on_loopback(tmp_path: Path) -> None:
    assert secure_cookies(_settings(tmp_path))
    assert session_cookie_name(_settings(tmp_path)) == "__Host-bastion_session"
    assert not secure_cookies(_settings(tmp_path, dev=True))
    assert secure_cookies(_settings(tmp_path, dev=True, host="0.0.0.0"))
    assert secure_cookies(_settings(tmp_path, dev=True, public_url="https://ci.example"))


def test_each_forge_gets_its_oauth_endpoints(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        github_client_id="gh",
        github_client_secret="s1",
        gitea_client_id="gt",
        gitea_client_secret="s2",
        gitea_url="https://gitea.example/",
        gitlab_client_id="gl",
        gitlab_client_secret="s3",
    )
    found = providers(settings)
    assert found["github"].authorize_url == "https://github.com/login/oauth/authorize"
    assert found["github"].token_url == "https://github.com/login/oauth/access_token"
    assert found["gitea"].authorize_url == "https://gitea.example/login/oauth/authorize"
    assert found["gitlab"].token_url == "https://gitlab.com/oauth/token"
    # A client id without its secret offers no login.
    assert providers(_settings(tmp_path, gitea_client_id="x", gitea_url="https://g.x")) == {}


def test_login_refuses_a_forge_over_plain_http(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, github_client_id="gh", github_client_secret="s", github_server="http://ghe.lan"
    )
    with pytest.raises(Unavailable, match="needs https"):
        begin(None, settings, providers(settings)["github"], "/", 0)  # type: ignore[arg-type]
