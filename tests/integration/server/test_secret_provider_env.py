"""The HTTP secret provider ignores the server process's environment: a proxy variable
(``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY``) set for other traffic must not route the
provider's replies, which hold secret values, through that proxy — the endpoint is asked
directly, as configured. Both ends are servers these tests start on 127.0.0.1."""

from __future__ import annotations

import pytest
from tests.support.secret_provider import TOKEN, make_build, make_repo, running_provider

from bastion.server.services.secret_providers import (
    ExternalSecret,
    ExternalSecretRequest,
    HttpSecretProvider,
)

VALUE = "vault-Pw9Xq2Zr7Lk4Mn"
SECRETS = {("secret/data/docker", "password"): {"data": VALUE}}


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_in_the_environment_never_sees_the_lookup(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    with running_provider(SECRETS) as provider, running_provider(SECRETS) as proxy:
        proxy_root = proxy.url.removesuffix("/secrets")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv(variable, proxy_root)
        request = ExternalSecretRequest(
            name="docker_password",
            path="secret/data/docker",
            key="password",
            repo=make_repo(),
            build=make_build(),
        )
        found = HttpSecretProvider(provider.url, TOKEN).find(request)
    assert found == ExternalSecret(value=VALUE, pull_request=False, fork=False)
    assert len(provider.received) == 1
    assert proxy.received == []
    assert proxy.refused == []
