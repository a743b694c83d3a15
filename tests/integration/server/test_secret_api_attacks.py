"""The secrets API when the database was tampered with: a secret whose row was edited (its
filters widened in SQL) cannot be decrypted, and changing only its filters through the API
must say so with a 409 naming the secret and what to do — not a 500 and a traceback in the
server's log — while a new value repairs it. On a real server (repository and organisation
scopes)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from tests.integration.server._support import Harness

VALUE = "tok-Qz7Wv3Kp9Xr2Lm5Nb8"
NEW_VALUE = "new-Fj4Hs6Dg1Yt0Ue"

ROUTES = {
    "repo": ("/api/repos/acme/web/secrets", "repo_secrets"),
    "org": ("/api/secrets/acme", "shared_secrets"),
}


@pytest.mark.parametrize("scope", sorted(ROUTES))
def test_a_filter_change_of_an_undecryptable_secret_is_409_not_500(
    server: Harness, caplog: pytest.LogCaptureFixture, scope: str
) -> None:
    caplog.set_level(logging.DEBUG)
    server.local_repo()
    route, table = ROUTES[scope]
    api = server.client(server.admin_token)
    body = {"name": "deploy", "data": VALUE, "events": ["tag"]}
    assert api.post(route, json=body).status_code == 200
    with server.ctx.store._engine.begin() as connection:  # widen it behind the API's back
        connection.execute(text(f"UPDATE {table} SET events = '[]' WHERE name = 'deploy'"))

    refused = api.patch(f"{route}/deploy", json={"branches": ["main"]})
    assert refused.status_code == 409, refused.text
    message = refused.json()["message"]
    assert message.startswith("secret 'deploy' cannot be decrypted on the server")
    assert "give it a new value" in message
    assert "Traceback" not in caplog.text
    assert "internal error" not in caplog.text

    repaired = api.patch(f"{route}/deploy", json={"data": NEW_VALUE, "events": ["push"]})
    assert repaired.status_code == 200, repaired.text
    assert repaired.json()["events"] == ["push"]
    for text_ in (refused.text, repaired.text, caplog.text):
        assert VALUE not in text_
        assert NEW_VALUE not in text_


@pytest.mark.parametrize("scope", sorted(ROUTES))
@pytest.mark.parametrize("field", ["data", "branches"])
def test_a_lone_surrogate_is_400_naming_the_field_not_500(
    server: Harness, caplog: pytest.LogCaptureFixture, scope: str, field: str
) -> None:
    # JSON may escape half a UTF-16 pair; such text is no Unicode and cannot be stored.
    server.local_repo()
    route, _ = ROUTES[scope]
    api = server.client(server.admin_token)
    raw = '"tok-\\ud800-Qz7Wv3Kp"' if field == "data" else '["main-\\udc00"]'
    body = '{"name": "odd", "data": "tok-Qz7Wv3Kp9Xr2Lm5Nb8"'.replace(
        '"data": "tok-Qz7Wv3Kp9Xr2Lm5Nb8"', f'"{field}": {raw}'
    )
    if field != "data":
        body += ', "data": "tok-Qz7Wv3Kp9Xr2Lm5Nb8"'
    body += "}"
    response = api.post(route, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert f"body field {field}" in response.json()["message"]
    assert "Qz7Wv3Kp" not in response.text
    assert "Traceback" not in caplog.text
    assert api.get(route).json() == []
