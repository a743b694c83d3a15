"""Reading the config at a commit through the GitHub, Gitea and GitLab APIs, against
``httpx.MockTransport`` (no network): the URLs and headers each forge documents, 404 as
"no file", and every failure as a ``ForgeError`` that names the forge and never the token."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import httpx
import pytest

from bastion.scm import ForgeClient, ForgeError, GiteaClient, GitHubClient, GitLabClient
from bastion.scm.forges import MAX_FILE_BYTES

SHA = "9ef2ec2b8e8d4bd1f0e1fba0f1bb4b9b2a0f8c11"
TOKEN = "ghp_very-secret-token"
CONFIG = b"kind: pipeline\ntype: docker\nname: default\nsteps:\n- name: test\n  image: alpine\n"

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers with ``respond`` and keeps every request."""

    def __init__(self, respond: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self._respond = respond

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._respond(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def github_file(content: bytes) -> httpx.Response:
    encoded = base64.encodebytes(content).decode()  # GitHub wraps base64 at 60 characters
    return httpx.Response(
        200,
        json={
            "type": "file",
            "encoding": "base64",
            "size": len(content),
            "name": ".drone.yml",
            "path": ".drone.yml",
            "content": encoded,
            "sha": "3d21ec53a331a6f037a91c368710b99387d012c1",
        },
    )


# -- GitHub ---------------------------------------------------------------------------------
def test_github_fetches_the_file_at_the_commit() -> None:
    recorder = Recorder(lambda request: github_file(CONFIG))
    client = GitHubClient(token=TOKEN, transport=recorder.transport)
    assert client.fetch_file("octo-org", "hello-world", SHA, ".drone.yml") == CONFIG
    (request,) = recorder.requests
    assert request.method == "GET"
    assert request.url.host == "api.github.com"
    assert request.url.path == "/repos/octo-org/hello-world/contents/.drone.yml"
    assert request.url.params["ref"] == SHA
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/vnd.github+json"
    assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"


def test_github_enterprise_api_prefix_and_nested_paths() -> None:
    recorder = Recorder(lambda request: github_file(CONFIG))
    client = GitHubClient("https://ghe.example.com/api/v3/", transport=recorder.transport)
    assert client.fetch_file("o", "n", SHA, "./ci//pipeline file.yml") == CONFIG
    (request,) = recorder.requests
    assert request.url.raw_path.startswith(
        b"/api/v3/repos/o/n/contents/ci/pipeline%20file.yml?ref="
    )
    assert "Authorization" not in request.headers  # no token, no header


def test_github_404_is_no_file() -> None:
    recorder = Recorder(lambda request: httpx.Response(404, json={"message": "Not Found"}))
    client = GitHubClient(token=TOKEN, transport=recorder.transport)
    assert client.fetch_file("octo-org", "hello-world", SHA, ".drone.yml") is None


def test_github_directory_or_submodule_is_no_file() -> None:
    listing = [{"type": "file", "name": "a.yml", "path": ".drone.yml/a.yml"}]
    client = GitHubClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=listing))
    )
    assert client.fetch_file("o", "n", SHA, ".drone.yml") is None
    submodule = {"type": "submodule", "path": ".drone.yml"}
    client = GitHubClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=submodule))
    )
    assert client.fetch_file("o", "n", SHA, ".drone.yml") is None


def test_github_large_file_without_content_is_an_error() -> None:
    too_large = {"type": "file", "encoding": "none", "size": 5_000_000, "content": ""}
    client = GitHubClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=too_large))
    )
    with pytest.raises(ForgeError, match="over the 1 MiB limit"):
        client.fetch_file("o", "n", SHA, ".drone.yml")
    no_content = {"type": "file", "encoding": "none", "size": 10}
    client = GitHubClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=no_content))
    )
    with pytest.raises(ForgeError, match="sent no content"):
        client.fetch_file("o", "n", SHA, ".drone.yml")


def test_github_bad_answers_are_errors() -> None:
    not_json = GitHubClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, text="<html>"))
    )
    with pytest.raises(ForgeError, match="not JSON"):
        not_json.fetch_file("o", "n", SHA, ".drone.yml")
    bad_b64 = {"type": "file", "encoding": "base64", "size": 3, "content": "!!!"}
    client = GitHubClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=bad_b64))
    )
    with pytest.raises(ForgeError, match="not valid base64"):
        client.fetch_file("o", "n", SHA, ".drone.yml")


def test_github_follows_a_rename_redirect() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/repos/old-org/"):
            return httpx.Response(
                301,
                headers={
                    "Location": f"https://api.github.com/repositories/1/contents/.drone.yml?ref={SHA}"
                },
            )
        return github_file(CONFIG)

    recorder = Recorder(respond)
    client = GitHubClient(token=TOKEN, transport=recorder.transport)
    assert client.fetch_file("old-org", "hello-world", SHA, ".drone.yml") == CONFIG
    assert recorder.requests[1].headers["Authorization"] == f"Bearer {TOKEN}"  # same origin


def test_token_is_not_sent_to_another_origin_on_redirect() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.github.com":
            return httpx.Response(302, headers={"Location": "https://elsewhere.example/x"})
        return github_file(CONFIG)

    recorder = Recorder(respond)
    GitHubClient(token=TOKEN, transport=recorder.transport).fetch_file("o", "n", SHA, "f")
    assert "Authorization" not in recorder.requests[1].headers


# -- Gitea ----------------------------------------------------------------------------------
def test_gitea_fetches_the_raw_file() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, content=CONFIG))
    client = GiteaClient("https://gitea.example.com/", "gitea-token", transport=recorder.transport)
    assert client.fetch_file("infra", "deploy-tools", SHA, ".drone.yml") == CONFIG
    (request,) = recorder.requests
    assert str(request.url) == (
        f"https://gitea.example.com/api/v1/repos/infra/deploy-tools/raw/.drone.yml?ref={SHA}"
    )
    assert request.headers["Authorization"] == "token gitea-token"


def test_gitea_under_a_sub_path() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, content=CONFIG))
    GiteaClient("https://example.com/git", transport=recorder.transport).fetch_file(
        "o", "n", SHA, "ci/.drone.yml"
    )
    assert recorder.requests[0].url.path == "/git/api/v1/repos/o/n/raw/ci/.drone.yml"


# -- GitLab ---------------------------------------------------------------------------------
def test_gitlab_encodes_project_and_file_path_as_one_segment_each() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, content=CONFIG))
    client = GitLabClient("https://gitlab.example.com", "glpat-xyz", transport=recorder.transport)
    assert client.fetch_file("platform/tools", "hello-world", SHA, "ci/.drone.yml") == CONFIG
    (request,) = recorder.requests
    assert request.url.raw_path == (
        b"/api/v4/projects/platform%2Ftools%2Fhello-world/repository/files/ci%2F.drone.yml/raw"
        + f"?ref={SHA}".encode()
    )
    assert request.headers["Authorization"] == "Bearer glpat-xyz"


def test_gitlab_404_is_no_file() -> None:
    client = GitLabClient(
        "https://gitlab.example.com",
        transport=httpx.MockTransport(
            lambda r: httpx.Response(404, json={"message": "404 File Not Found"})
        ),
    )
    assert client.fetch_file("g", "p", SHA, ".drone.yml") is None


# -- failures, for every forge --------------------------------------------------------------
CLIENTS: list[tuple[str, Callable[[httpx.BaseTransport], ForgeClient]]] = [
    ("github", lambda t: GitHubClient(token=TOKEN, transport=t)),
    ("gitea", lambda t: GiteaClient("https://gitea.example.com", TOKEN, transport=t)),
    ("gitlab", lambda t: GitLabClient("https://gitlab.example.com", TOKEN, transport=t)),
]


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        (
            httpx.Response(401, json={"message": "Bad credentials"}),
            "authentication failed (HTTP 401)",
        ),
        (httpx.Response(403, json={"message": "Forbidden"}), "access denied (HTTP 403)"),
        (
            httpx.Response(403, headers={"X-RateLimit-Remaining": "0"}),
            "rate limit exceeded (HTTP 403)",
        ),
        (httpx.Response(429), "rate limit exceeded (HTTP 429)"),
        (httpx.Response(500), "server error (HTTP 500)"),
        (httpx.Response(503, text="maintenance"), "server error (HTTP 503)"),
        (httpx.Response(400), "unexpected answer (HTTP 400)"),
    ],
)
@pytest.mark.parametrize(("forge", "make"), CLIENTS)
def test_http_failures(
    forge: str,
    make: Callable[[httpx.BaseTransport], ForgeClient],
    response: httpx.Response,
    problem: str,
) -> None:
    client = make(httpx.MockTransport(lambda request: response))
    with pytest.raises(ForgeError) as caught:
        client.fetch_file("owner", "repo", SHA, ".drone.yml")
    assert caught.value.forge == forge
    assert str(caught.value).startswith(f"{forge}: ")
    assert problem in str(caught.value)
    assert ".drone.yml of owner/repo" in str(caught.value)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("exception", "problem"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "unreachable"),
        (httpx.ConnectTimeout("timed out"), "timed out"),
        (httpx.ReadTimeout("timed out"), "timed out"),
        (httpx.RemoteProtocolError("peer closed connection"), "unreachable"),
    ],
)
@pytest.mark.parametrize(("forge", "make"), CLIENTS)
def test_transport_failures(
    forge: str,
    make: Callable[[httpx.BaseTransport], ForgeClient],
    exception: httpx.TransportError,
    problem: str,
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exception

    with pytest.raises(ForgeError) as caught:
        make(httpx.MockTransport(fail)).fetch_file("owner", "repo", SHA, ".drone.yml")
    assert caught.value.forge == forge
    assert problem in str(caught.value)


@pytest.mark.parametrize(("forge", "make"), CLIENTS[1:])
def test_raw_file_over_the_limit(
    forge: str, make: Callable[[httpx.BaseTransport], ForgeClient]
) -> None:
    big = b"x" * (MAX_FILE_BYTES + 1)
    client = make(httpx.MockTransport(lambda request: httpx.Response(200, content=big)))
    with pytest.raises(ForgeError, match="over the 1 MiB limit"):
        client.fetch_file("o", "n", SHA, ".drone.yml")

    def streamed(request: httpx.Request) -> httpx.Response:
        # no Content-Length: the limit must hold while reading, too
        return httpx.Response(200, content=iter([b"x" * 65536] * 17))

    with pytest.raises(ForgeError, match="over the 1 MiB limit"):
        make(httpx.MockTransport(streamed)).fetch_file("o", "n", SHA, ".drone.yml")
    exact = b"y" * MAX_FILE_BYTES
    client = make(httpx.MockTransport(lambda request: httpx.Response(200, content=exact)))
    assert client.fetch_file("o", "n", SHA, ".drone.yml") == exact


def test_too_many_redirects() -> None:
    loop = httpx.MockTransport(
        lambda r: httpx.Response(302, headers={"Location": "https://gitea.example.com/loop"})
    )
    with pytest.raises(ForgeError, match="too many redirects"):
        GiteaClient("https://gitea.example.com", transport=loop).fetch_file("o", "n", SHA, "f")


@pytest.mark.parametrize(
    ("owner", "name", "sha", "path", "problem"),
    [
        ("o", "n", "main", ".drone.yml", "invalid commit id"),
        ("o", "n", SHA.upper(), ".drone.yml", "invalid commit id"),
        ("o", "n", SHA[:12], ".drone.yml", "invalid commit id"),
        ("o", "n", SHA, "../secrets.yml", "'..' is not allowed"),
        ("o", "n", SHA, "/etc/passwd", "must be relative"),
        ("o", "n", SHA, "", "empty"),
        ("o", "n", SHA, "a\nb", "control characters"),
        ("", "n", SHA, ".drone.yml", "invalid repository owner"),
        ("o", "..", SHA, ".drone.yml", "invalid repository name"),
        ("o\n", "n", SHA, ".drone.yml", "invalid repository owner"),
    ],
)
def test_malformed_arguments_never_reach_the_network(
    owner: str, name: str, sha: str, path: str, problem: str
) -> None:
    recorder = Recorder(lambda request: github_file(CONFIG))
    with pytest.raises(ValueError, match=problem):
        GitHubClient(transport=recorder.transport).fetch_file(owner, name, sha, path)
    assert recorder.requests == []


def test_clients_are_forge_clients_and_close() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(404))
    for _, make in CLIENTS:
        client = make(transport)
        assert isinstance(client, ForgeClient)
    with GiteaClient("https://gitea.example.com", transport=transport) as client:
        assert client.fetch_file("o", "n", SHA, "f") is None


def test_sha256_commit_ids_are_accepted() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, content=CONFIG))
    sha256 = "a" * 64
    GiteaClient("https://g.example", transport=recorder.transport).fetch_file("o", "n", sha256, "f")
    assert recorder.requests[0].url.params["ref"] == sha256


def test_error_messages_do_not_contain_the_token() -> None:
    client = GitHubClient(
        token=TOKEN,
        transport=httpx.MockTransport(
            lambda request: httpx.Response(401, text=json.dumps({"token": TOKEN}))
        ),
    )
    with pytest.raises(ForgeError) as caught:
        client.fetch_file("o", "n", SHA, "f")
    assert TOKEN not in repr(caught.value)
