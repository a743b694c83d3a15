"""The local forge's hook deliveries: signature first, then the body; one event per pushed
branch or tag; and the hook script's behaviour when the server cannot be asked."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from bastion.scm import WebhookError, parse_local_hook
from bastion.scm import _post_receive as hook_script
from bastion.scm.local import check_repo_name, repo_hook_key

KEY = b"server-hook-key-0123456789abcdef"
NOW = 1_715_680_000.0
OLD = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
NEW = "9ef2ec2b8e8d4bd1f0e1fba0f1bb4b9b2a0f8c11"
ZERO = "0" * 40


def delivery(
    updates: list[dict[str, str]],
    *,
    owner: str = "acme",
    name: str = "app",
    sent: float = NOW,
    key: bytes = KEY,
    header_repo: str | None = None,
    **extra: Any,
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        {"owner": owner, "name": name, "updates": updates, "sent": int(sent), "nonce": "ab" * 16}
        | extra
    ).encode()
    slug = header_repo or f"{owner}/{name}"
    repo_owner, repo_name = slug.split("/")
    signature = hmac.new(repo_hook_key(key, repo_owner, repo_name), body, hashlib.sha256)
    return {"X-Bastion-Repo": slug, "X-Bastion-Signature": signature.hexdigest()}, body


def update(ref: str, before: str = OLD, after: str = NEW) -> dict[str, str]:
    return {"before": before, "after": after, "ref": ref}


def parse(headers: dict[str, str], body: bytes) -> list[Any]:
    return parse_local_hook(headers, body, KEY, now=NOW)


def test_branch_push_becomes_a_push_event() -> None:
    headers, body = delivery([update("refs/heads/main")])
    (event,) = parse(headers, body)
    assert event.forge == "local"
    assert (event.event, event.action) == ("push", "")
    assert (event.repo_owner, event.repo_name, event.repo_forge_id) == ("acme", "app", "")
    assert (event.ref, event.branch, event.source_branch, event.tag) == (
        "refs/heads/main",
        "main",
        "main",
        "",
    )
    assert (event.before, event.after) == (OLD, NEW)
    assert event.message == ""  # filled by LocalForge.enrich from the repository
    assert event.delivery_id == hashlib.sha256(body).hexdigest() + ".0"


def test_tags_deletions_and_other_refs() -> None:
    headers, body = delivery(
        [
            update("refs/heads/feature/x", before=ZERO),  # new branch: built
            update("refs/tags/v1.0.0", before=ZERO),  # new tag: built
            update("refs/heads/old", after=ZERO),  # deleted branch: skipped
            update("refs/tags/v0.9", after=ZERO),  # deleted tag: skipped
            update("refs/notes/commits"),  # not a branch or a tag: skipped
        ]
    )
    events = parse(headers, body)
    assert [(e.event, e.branch, e.tag) for e in events] == [
        ("push", "feature/x", ""),
        ("tag", "", "v1.0.0"),
    ]
    # one delivery id per event, stable for a redelivery of the same body
    assert [e.delivery_id.rsplit(".", 1)[1] for e in events] == ["0", "1"]
    assert [e.delivery_id for e in parse(headers, body)] == [e.delivery_id for e in events]


def test_only_deletions_gives_no_events() -> None:
    headers, body = delivery([update("refs/heads/old", after=ZERO)])
    assert parse(headers, body) == []


def test_tampered_body_is_401() -> None:
    headers, body = delivery([update("refs/heads/main")])
    tampered = body.replace(b"refs/heads/main", b"refs/heads/prod")
    with pytest.raises(WebhookError) as caught:
        parse(headers, tampered)
    assert caught.value.status_code == 401
    assert "does not match" in caught.value.message


def test_wrong_key_is_401() -> None:
    headers, body = delivery([update("refs/heads/main")], key=b"another-key-of-enough-bytes")
    with pytest.raises(WebhookError) as caught:
        parse(headers, body)
    assert caught.value.status_code == 401


def test_one_repositorys_key_cannot_sign_for_another() -> None:
    # the holder of acme/app's hook key signs a body about acme/payroll
    headers, body = delivery([update("refs/heads/main")], name="payroll", header_repo="acme/app")
    with pytest.raises(WebhookError) as caught:
        parse(headers, body)
    assert caught.value.status_code == 401
    assert "another repository" in caught.value.message
    # and claiming acme/payroll in the header does not verify with acme/app's key
    headers["X-Bastion-Repo"] = "acme/payroll"
    with pytest.raises(WebhookError, match="does not match"):
        parse(headers, body)


@pytest.mark.parametrize(
    ("drop", "problem"),
    [("X-Bastion-Signature", "no X-Bastion-Signature"), ("X-Bastion-Repo", "X-Bastion-Repo")],
)
def test_missing_headers_are_401(drop: str, problem: str) -> None:
    headers, body = delivery([update("refs/heads/main")])
    del headers[drop]
    with pytest.raises(WebhookError) as caught:
        parse(headers, body)
    assert caught.value.status_code == 401
    assert problem in caught.value.message


@pytest.mark.parametrize("slug", ["../etc", "acme/../x", "-x/app", "acme", "acme/app/x", ""])
def test_malformed_repo_header_is_401(slug: str) -> None:
    _, body = delivery([update("refs/heads/main")])
    with pytest.raises(WebhookError) as caught:
        parse({"X-Bastion-Repo": slug, "X-Bastion-Signature": "00" * 32}, body)
    assert caught.value.status_code == 401


@pytest.mark.parametrize("age", [301.0, -301.0])
def test_stale_or_future_delivery_is_401(age: float) -> None:
    headers, body = delivery([update("refs/heads/main")], sent=NOW - age)
    with pytest.raises(WebhookError) as caught:
        parse(headers, body)
    assert caught.value.status_code == 401
    assert "over the 300 s limit" in caught.value.message


def test_signature_is_checked_before_the_body_is_parsed() -> None:
    # garbage with a wrong signature is a 401, not a 400: nothing unauthenticated is parsed
    with pytest.raises(WebhookError) as caught:
        parse({"X-Bastion-Repo": "acme/app", "X-Bastion-Signature": "00" * 32}, b"{not json")
    assert caught.value.status_code == 401


def _signed(body: bytes) -> dict[str, str]:
    signature = hmac.new(repo_hook_key(KEY, "acme", "app"), body, hashlib.sha256).hexdigest()
    return {"x-bastion-repo": "acme/app", "x-bastion-signature": signature}


def _body(updates: list[dict[str, str]], **fields: object) -> bytes:
    return json.dumps({"owner": "acme", "name": "app", "updates": updates} | fields).encode()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (_body([], sent="now"), "sent is a string"),
        (_body([]), "sent is missing"),
        (_body([{"ref": "refs/heads/m"}], sent=int(NOW)), "updates[0].before is missing"),
        (_body([update("refs/heads/m", "x", "y")], sent=int(NOW)), "not a full commit id"),
        (_body([update("refs/heads/a b")], sent=int(NOW)), "not a valid git ref"),
        (_body([update("refs/heads/m")], sent=int(NOW), owner="other"), "another repository"),
    ],
)
def test_malformed_signed_body_is_400(body: bytes, problem: str) -> None:
    with pytest.raises(WebhookError) as caught:
        parse(_signed(body), body)
    assert caught.value.status_code == (401 if problem == "another repository" else 400)
    assert problem in caught.value.message


def test_repo_hook_keys_differ_per_repository() -> None:
    keys = {repo_hook_key(KEY, o, n) for o, n in [("acme", "app"), ("acme", "ap"), ("acm", "eapp")]}
    assert len(keys) == 3
    assert repo_hook_key(KEY, "acme", "app") == repo_hook_key(KEY, "acme", "app")
    assert KEY not in repo_hook_key(KEY, "acme", "app")


@pytest.mark.parametrize(
    "value",
    ["", ".", "..", "a..b", "-rf", ".hidden", "a/b", "a\\b", "app.git", "a b", "é", "x" * 101],
)
def test_check_repo_name_refuses(value: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        check_repo_name(value, "name")


@pytest.mark.parametrize("value", ["app", "My_Repo-2", "a.b", "0", "x" * 100])
def test_check_repo_name_accepts(value: str) -> None:
    assert check_repo_name(value, "name") == value


# -- the hook script, in-process ------------------------------------------------------------
def _config(tmp_path: Path, url: str) -> str:
    path = tmp_path / "bastion-hook.json"
    path.write_text(
        json.dumps({"url": url, "repo": "acme/app", "key": KEY.hex(), "ca_cert": "", "timeout": 2})
    )
    return str(path)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


def test_hook_says_so_when_the_server_is_down(tmp_path: Path) -> None:
    out = io.StringIO()
    url = f"http://127.0.0.1:{_closed_port()}/hook/local"
    code = hook_script.main(_config(tmp_path, url), [f"{OLD} {NEW} refs/heads/main\n"], out)
    assert code == 0  # the push already happened: never fail it
    assert out.getvalue().startswith("bastion: could not reach the Bastion server at ")
    assert "no build requested" in out.getvalue()
    assert out.getvalue().count("\n") == 1


def test_hook_sends_nothing_for_deletions_only(tmp_path: Path) -> None:
    out = io.StringIO()
    url = f"http://127.0.0.1:{_closed_port()}/hook/local"
    code = hook_script.main(_config(tmp_path, url), [f"{OLD} {ZERO} refs/heads/old\n"], out)
    assert code == 0
    assert out.getvalue() == "bastion: nothing to build (only deletions)\n"


def test_hook_with_unreadable_settings(tmp_path: Path) -> None:
    out = io.StringIO()
    assert hook_script.main(str(tmp_path / "missing.json"), [], out) == 0
    assert (
        out.getvalue()
        == "bastion: hook settings unreadable (FileNotFoundError); no build requested\n"
    )
    (tmp_path / "bad.json").write_text('{"url": "http://x", "repo": "no-slash", "key": "00"}')
    out = io.StringIO()
    assert hook_script.main(str(tmp_path / "bad.json"), [], out) == 0
    assert "hook settings unreadable (ValueError)" in out.getvalue()


def test_hook_ignores_malformed_input_lines(tmp_path: Path) -> None:
    assert hook_script._read_updates(["", "garbage\n", f"{OLD} {NEW} refs/heads/main\n"]) == [
        {"before": OLD, "after": NEW, "ref": "refs/heads/main"}
    ]
