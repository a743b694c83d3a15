"""Custom builds of an explicit commit: the commit must be on the branch it is built as, so
that write access cannot pass any commit off as a build of ``main`` (and get the secrets and
``when: branch`` pipelines limited to ``main``)."""

from __future__ import annotations

from collections.abc import Callable

from tests.integration.server._support import PIPELINE, FakeForge, Harness, wait_for
from tests.support.commit_forge import TOKEN, CommitForge


def test_a_commit_of_another_branch_cannot_be_built_as_main(server: Harness) -> None:
    checkout = server.local_repo()
    on_main = checkout.commit({".drone.yml": PIPELINE}, "on main")
    checkout.push()
    wait_for(server.builds)
    checkout.git("checkout", "--quiet", "-b", "feature")
    on_feature = checkout.commit({".drone.yml": PIPELINE + b"# feature\n"}, "on feature")
    checkout.push("feature")
    wait_for(lambda: len(server.builds()) == 2)
    checkout.git("checkout", "--quiet", "main")
    newer = checkout.commit({".drone.yml": PIPELINE + b"# newer\n"}, "newer on main")
    checkout.push()
    wait_for(lambda: len(server.builds()) == 3)

    smuggled = server.admin.post(
        "/api/repos/acme/web/builds", params={"branch": "main", "commit": on_feature}
    )
    assert smuggled.status_code == 400
    assert "is not on branch 'main'" in smuggled.json()["message"]
    assert len(server.builds()) == 3  # nothing stored

    # An older commit of main is on main: it may be built again.
    older = server.admin.post(
        "/api/repos/acme/web/builds", params={"branch": "main", "commit": on_main}
    )
    assert older.status_code == 200, older.text
    assert (older.json()["after"], older.json()["target"]) == (on_main, "main")
    head = server.admin.post("/api/repos/acme/web/builds", params={"branch": "main"})
    assert head.json()["after"] == newer
    feature = server.admin.post(
        "/api/repos/acme/web/builds", params={"branch": "feature", "commit": on_feature}
    )
    assert feature.status_code == 200, feature.text


def test_an_unknown_commit_is_refused(server: Harness) -> None:
    checkout = server.local_repo()
    checkout.commit({".drone.yml": PIPELINE}, "on main")
    checkout.push()
    wait_for(server.builds)
    response = server.admin.post(
        "/api/repos/acme/web/builds", params={"branch": "main", "commit": "0" * 40}
    )
    assert response.status_code == 400


def test_a_forge_repository_without_api_access_cannot_prove_the_branch(
    server: Harness, forge: FakeForge
) -> None:
    server.forge_repo("github", "octo-org", "hello-world", forge_id="1")
    response = server.admin.post(
        "/api/repos/octo-org/hello-world/builds", params={"branch": "main", "commit": "a" * 40}
    )
    assert response.status_code == 400
    assert "cannot check that commit" in response.json()["message"]
    assert server.builds("octo-org/hello-world") == []


def test_a_forge_repository_builds_the_head_of_its_branch_only(
    make_server: Callable[..., Harness], forge: FakeForge
) -> None:
    commit_forge = CommitForge()
    try:
        server = make_server(github_api_url=f"{commit_forge.url}/api/v3", github_token=TOKEN)
        server.forge_repo("github", "octo-org", "hello-world", forge_id="1")
        head, other = "b" * 40, "c" * 40
        commit_forge.branches[("octo-org", "hello-world", "main")] = head
        forge.files[("octo-org", "hello-world", head, ".drone.yml")] = PIPELINE
        refused = server.admin.post(
            "/api/repos/octo-org/hello-world/builds", params={"branch": "main", "commit": other}
        )
        assert refused.status_code == 400
        assert "is not the head of branch 'main'" in refused.json()["message"]
        built = server.admin.post(
            "/api/repos/octo-org/hello-world/builds", params={"branch": "main", "commit": head}
        )
        assert built.status_code == 200, built.text
        assert (built.json()["after"], built.json()["target"]) == (head, "main")
    finally:
        commit_forge.close()
