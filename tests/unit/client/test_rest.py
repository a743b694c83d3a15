"""``BastionClient`` against an in-memory API (``httpx.MockTransport``): every method, what
it sends, what it returns, and how failures become ``ClientError``\\ s."""

from __future__ import annotations

import httpx
import pytest
from tests.unit.client.fakeapi import SERVER, TOKEN, FakeApi, make_build, make_step, sse

from bastion.client import (
    BastionClient,
    ClientError,
    ServerURLError,
    UnauthorizedError,
    UnreachableError,
)
from bastion.rpc.api import (
    LogLineOut,
    RepoCreate,
    RepoPatch,
    SecretCreate,
    SecretOut,
    UserCreate,
    UserPatch,
)


@pytest.fixture
def api() -> FakeApi:
    api = FakeApi()
    api.add_repo("acme/web")
    return api


@pytest.fixture
def client(api: FakeApi) -> BastionClient:
    return BastionClient(SERVER, TOKEN, transport=api.transport)


def test_system_endpoints(client: BastionClient) -> None:
    assert client.healthz() == "ok"
    version = client.version()
    assert (version.version, version.protocol) == ("0.1.0", 1)


def test_token_is_sent_as_bearer(api: FakeApi, client: BastionClient) -> None:
    assert client.user_self().login == "admin"
    other = BastionClient(SERVER, "wrong", transport=api.transport)
    with pytest.raises(UnauthorizedError) as err:
        other.user_self()
    assert err.value.status == 401
    assert "invalid or missing token" in err.value.message
    assert "wrong" not in err.value.message  # the token is never echoed


def test_users(api: FakeApi, client: BastionClient) -> None:
    created = client.users_create(UserCreate(login="bob", email="bob@example.com"))
    assert created.login == "bob"
    assert api.requests[-1][3] == {
        "login": "bob",
        "email": "bob@example.com",
        "admin": False,
        "machine": False,
    }
    assert [u.login for u in client.users_list()] == ["admin", "bob"]
    assert client.users_get("bob").email == "bob@example.com"
    updated = client.users_update("bob", UserPatch(admin=True))
    assert updated.admin
    assert api.requests[-1][3] == {"admin": True}  # fields left out are not sent
    token = client.user_token("bob")
    assert token.login == "bob"
    assert token.token
    client.users_delete("bob")
    with pytest.raises(ClientError) as err:
        client.users_get("bob")
    assert (err.value.status, err.value.message) == (404, "no user bob")


def test_repos(api: FakeApi, client: BastionClient) -> None:
    assert [r.slug for r in client.repos_list()] == ["acme/web"]
    assert client.repos_get("acme", "web").active
    created = client.repos_create(RepoCreate(owner="acme", name="api"))
    assert created.git_push_url.endswith("/git/acme/api.git")
    forge = client.repos_create(
        RepoCreate(owner="acme", name="gh", forge="github", http_url="https://github.com/a/b")
    )
    assert forge.webhook_url
    assert forge.webhook_secret
    updated = client.repos_update("acme", "web", RepoPatch(trusted=True, timeout=30))
    assert (updated.trusted, updated.timeout) == (True, 30)
    assert api.requests[-1][:2] == ("PATCH", "/api/repos/acme/web")
    assert api.requests[-1][3] == {"trusted": True, "timeout": 30}
    client.repos_disable("acme", "web")
    assert not api.repos["acme/web"].active
    assert client.repos_enable("acme", "web").active


def test_path_segments_are_escaped() -> None:
    raw: list[bytes] = []

    def record(request: httpx.Request) -> httpx.Response:
        raw.append(request.url.raw_path)
        return httpx.Response(404, json={"message": "not found"})

    client = BastionClient(SERVER, TOKEN, transport=httpx.MockTransport(record))
    with pytest.raises(ClientError):
        client.repos_get("acme", "../../users")
    assert raw == [b"/api/repos/acme/..%2F..%2Fusers"]


def test_builds(api: FakeApi, client: BastionClient) -> None:
    for n in (1, 2, 3):
        api.builds[("acme/web", n)] = make_build(n, "success", [make_step(1, "test", "success")])
    page = client.builds_list("acme", "web", page=2, per_page=2)
    assert [b.number for b in page] == [1]
    assert api.requests[-1][2] == {"page": "2", "per_page": "2"}
    assert client.builds_get("acme", "web", 2).number == 2
    assert client.builds_latest("acme", "web").number == 3
    created = client.builds_create("acme", "web", branch="dev", commit="abc1234")
    assert created.number == 4
    assert api.requests[-1][2] == {"branch": "dev", "commit": "abc1234"}
    restarted = client.builds_restart("acme", "web", 1)
    assert (restarted.number, restarted.parent) == (5, 1)
    cancelled = client.builds_cancel("acme", "web", 5)
    assert cancelled is not None
    assert cancelled.status == "killed"
    with pytest.raises(ClientError) as err:
        client.builds_cancel("acme", "web", 1)
    assert err.value.status == 409
    assert "already success" in err.value.message


def test_logs(api: FakeApi, client: BastionClient) -> None:
    api.builds[("acme/web", 1)] = make_build(1, "success", [make_step(1, "test", "success")])
    api.logs[("acme/web", 1, 1, 1)] = [LogLineOut(pos=0, out="hello\n", time=0)]
    assert client.logs("acme", "web", 1, 1, 1) == [LogLineOut(pos=0, out="hello\n", time=0)]


def test_stream_logs_parses_server_sent_events(api: FakeApi, client: BastionClient) -> None:
    lines = [LogLineOut(pos=i, out=f"line {i}", time=i) for i in range(3)]
    events = [("line", ln.model_dump_json()) for ln in lines]
    # Unknown events are skipped; nothing after "end" is read.
    events.insert(1, ("progress", "{}"))
    events += [("end", ""), ("line", lines[0].model_dump_json())]
    api.streams[("acme/web", 1, 1, 2)] = sse(events)
    assert list(client.stream_logs("acme", "web", 1, 1, 2)) == lines
    assert api.requests[-1][1] == "/api/stream/acme/web/1/1/2"


def test_stream_error_status_is_a_client_error(api: FakeApi, client: BastionClient) -> None:
    api.token = "other"
    with pytest.raises(UnauthorizedError):
        list(client.stream_logs("acme", "web", 1, 1, 1))


def test_runners(api: FakeApi, client: BastionClient) -> None:
    created = client.runners_create("build-1")
    assert created.token
    assert [r.name for r in client.runners_list()] == ["build-1"]
    client.runners_revoke("build-1")
    assert client.runners_list()[0].revoked
    with pytest.raises(ClientError) as err:
        client.runners_create("bad name!")
    assert (err.value.status, err.value.message) == (400, "name: must be letters, digits, _ . -")


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(403, json={"message": "admins only"}), "admins only"),
        (httpx.Response(422, json={"detail": "bad thing"}), "bad thing"),
        (
            httpx.Response(
                422, json={"detail": [{"loc": ["body", "timeout"], "msg": "too large"}]}
            ),
            "timeout: too large",
        ),
        (httpx.Response(502, text="<html>Bad gateway</html>"), "<html>Bad gateway</html>"),
        (httpx.Response(500), "Internal Server Error"),
    ],
)
def test_error_mapping(response: httpx.Response, message: str) -> None:
    client = BastionClient(SERVER, TOKEN, transport=httpx.MockTransport(lambda r: response))
    with pytest.raises(ClientError) as err:
        client.repos_list()
    assert err.value.status == response.status_code
    assert err.value.message == message


def test_unexpected_json_shape_says_so() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=[{"nope": 1}]))
    client = BastionClient(SERVER, TOKEN, transport=transport)
    with pytest.raises(ClientError) as err:
        client.repos_list()
    assert "does not understand" in err.value.message


def test_connection_failure_names_the_server() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    client = BastionClient(SERVER, TOKEN, transport=httpx.MockTransport(refuse))
    with pytest.raises(UnreachableError) as err:
        client.version()
    assert err.value.status == 0
    assert SERVER in err.value.message
    assert "Connection refused" in err.value.message


def test_tls_failure_suggests_a_ca_certificate() -> None:
    def bad_cert(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] self-signed", request=request)

    client = BastionClient("https://ci.example.com", TOKEN, transport=httpx.MockTransport(bad_cert))
    with pytest.raises(UnreachableError) as err:
        client.version()
    assert "BASTION_CA_CERT" in err.value.message


def test_real_connection_refused_on_loopback() -> None:
    # Port 9 (discard) on loopback: nothing listens there in the test environment.
    client = BastionClient("http://127.0.0.1:9", TOKEN, timeout=2)
    with pytest.raises(UnreachableError) as err:
        client.version()
    assert "http://127.0.0.1:9" in err.value.message


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080", "http://localhost", "http://[::1]:80", "https://ci.example.com"],
)
def test_accepted_urls(url: str) -> None:
    BastionClient(url, TOKEN).close()


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://ci.example.com", "plain HTTP"),
        ("http://10.0.0.5:8080", "plain HTTP"),
        ("ftp://ci.example.com", "not valid"),
        ("ci.example.com", "not valid"),
        ("https://user:pw@ci.example.com", "credentials"),
        ("https://ci.example.com:port", "not valid"),
    ],
)
def test_refused_urls(url: str, needle: str) -> None:
    with pytest.raises(ServerURLError) as err:
        BastionClient(url, TOKEN)
    assert needle in err.value.message


def test_insecure_allows_plain_http_elsewhere() -> None:
    BastionClient("http://ci.example.com", TOKEN, insecure=True).close()


def test_ca_cert_that_cannot_be_read(tmp_path: object) -> None:
    with pytest.raises(ServerURLError) as err:
        BastionClient("https://ci.example.com", TOKEN, verify="/nonexistent/ca.pem")
    assert "/nonexistent/ca.pem" in err.value.message


def test_redirects_are_not_followed() -> None:
    seen: list[str] = []

    def redirect(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"location": "https://evil.example/steal"})

    client = BastionClient(SERVER, TOKEN, transport=httpx.MockTransport(redirect))
    with pytest.raises(ClientError) as err:
        client.version()
    assert err.value.status == 302
    assert "https://evil.example/steal" in err.value.message
    assert seen == [f"{SERVER}/version"]  # the token never went to the other host


def test_secrets(api: FakeApi, client: BastionClient) -> None:
    value = "s3cr3t-Qz7Wv3Kp9Xr2"
    saved = client.secret_add("acme", "web", SecretCreate(name="token", data=value))
    assert saved == SecretOut(name="token", pull_request=False, created=100, updated=100)
    method, path, _, body = api.requests[-1]
    assert (method, path) == ("POST", "/api/repos/acme/web/secrets")
    # The value, in clear; the filters, empty unless given.
    assert body == {
        "name": "token",
        "data": value,
        "pull_request": False,
        "events": [],
        "branches": [],
        "images": [],
    }
    client.secret_add("acme", "web", SecretCreate(name="npm", data="npm-Vc2Bx9", pull_request=True))
    assert [(s.name, s.pull_request) for s in client.secrets_list("acme", "web")] == [
        ("npm", True),
        ("token", False),
    ]
    assert client.secret_info("acme", "web", "token").name == "token"
    client.secret_rm("acme", "web", "token")
    assert api.requests[-1][:2] == ("DELETE", "/api/repos/acme/web/secrets/token")
    with pytest.raises(ClientError) as err:
        client.secret_info("acme", "web", "token")
    assert err.value.status == 404
    # A name is one path segment, whatever it holds.
    seen: list[bytes] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        return httpx.Response(204)

    raw = BastionClient(SERVER, TOKEN, transport=httpx.MockTransport(record))
    raw.secret_rm("acme", "web", "../../builds")
    assert seen == [b"/api/repos/acme/web/secrets/..%2F..%2Fbuilds"]


def test_a_secret_value_never_shows_in_a_repr_or_an_error() -> None:
    from pydantic import ValidationError

    value = "s3cr3t-Qz7Wv3Kp9Xr2"
    body = SecretCreate(name="token", data=value)
    assert value not in repr(body)
    assert value not in str(body)
    assert value not in body.model_dump_json()
    assert body.wire()["data"] == value
    with pytest.raises(ValidationError) as err:
        SecretCreate(name="not a name", data=value)
    assert value not in str(err.value)
    assert "data" not in SecretOut.model_fields
