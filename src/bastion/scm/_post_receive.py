"""Bastion's post-receive hook for repositories of the local forge.

``LocalForge.create`` copies this file to ``hooks/post-receive`` of each repository, with a
shebang naming the Python that created it (run with ``-I``). It uses the standard library
only: it runs inside ``git receive-pack``, not inside the server.

git feeds it one ``<old> <new> <ref>`` line per updated ref. It reads its settings from
``bastion-hook.json`` beside it (server URL, repository, signing key, CA file), POSTs the
updates to the server signed with HMAC-SHA256, and prints one line for the pusher. The push
has already happened when this runs, so the hook never fails it: it exits 0 whatever the
server says, and gives up after a few seconds if the server does not answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import IO

CONFIG_NAME = "bastion-hook.json"
MAX_TIMEOUT = 10.0  # the whole exchange with the server, not each network operation


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The hook talks to one URL; a redirect is a misconfiguration, not a hint to follow
    (urllib would turn the POST into a GET elsewhere)."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _say(out: IO[str], text: str) -> None:
    out.write(f"bastion: {text}\n")
    out.flush()


def _read_updates(lines: Iterable[str]) -> list[dict[str, str]]:
    updates = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            before, after, ref = parts
            updates.append({"before": before, "after": after, "ref": ref})
    return updates


def _deadline(signum: int, frame: object) -> None:
    raise TimeoutError(f"no answer within {MAX_TIMEOUT:.0f} s")


def _set_alarm() -> bool:
    try:
        signal.signal(signal.SIGALRM, _deadline)
    except ValueError:  # not the main thread (main() called from a test): no alarm
        return False
    signal.alarm(int(MAX_TIMEOUT))
    return True


def _opener(url: str, ca_cert: str) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [
        # never through a proxy from the environment: the server is this forge's own
        urllib.request.ProxyHandler({}),
        _NoRedirect(),
    ]
    if url.startswith("https:"):
        context = ssl.create_default_context(cafile=ca_cert or None)
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


def main(
    config_path: str | None = None,
    lines: Iterable[str] | None = None,
    out: IO[str] | None = None,
) -> int:
    out = out if out is not None else sys.stderr
    if config_path is None:
        config_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), CONFIG_NAME)
    try:
        with open(config_path, encoding="utf-8") as handle:
            config = json.load(handle)
        url = str(config["url"])
        owner, name = str(config["repo"]).split("/")
        key = bytes.fromhex(str(config["key"]))
        ca_cert = str(config.get("ca_cert") or "")
        timeout = min(float(config.get("timeout") or 5), MAX_TIMEOUT)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _say(out, f"hook settings unreadable ({exc.__class__.__name__}); no build requested")
        return 0

    updates = _read_updates(lines if lines is not None else sys.stdin)
    if not any(set(update["after"]) != {"0"} for update in updates):
        _say(out, "nothing to build (only deletions)")
        return 0
    body = json.dumps(
        {
            "owner": owner,
            "name": name,
            "updates": updates,
            "sent": int(time.time()),
            # makes every delivery distinct, so the server's duplicate check never swallows
            # a second push of the same refs (delete a branch, push it again)
            "nonce": secrets.token_hex(16),
        },
        separators=(",", ":"),
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - the URL is the server's, http(s) only
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "bastion-post-receive",
            "X-Bastion-Repo": f"{owner}/{name}",
            "X-Bastion-Signature": hmac.new(key, body, hashlib.sha256).hexdigest(),
        },
    )
    # urllib's timeout bounds each socket operation; the alarm bounds them all together
    alarm = _set_alarm()
    try:
        with _opener(url, ca_cert).open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", errors="replace").strip().splitlines()
        refusal = detail[0] if detail else str(exc.reason)
        _say(out, f"the server refused the push notification (HTTP {exc.code}: {refusal})")
        return 0
    except (OSError, ValueError) as exc:  # URLError, timeouts, TLS errors are OSErrors
        problem = str(getattr(exc, "reason", None) or exc)
        _say(out, f"could not reach the Bastion server at {url} ({problem}); no build requested")
        return 0
    finally:
        if alarm:
            signal.alarm(0)
    if status == 204:
        _say(out, "the server received the push; nothing to build")
    else:
        _say(out, "build requested")
    return 0


def run() -> int:
    """``main`` for git: whatever goes wrong, one line for the pusher and exit code 0."""
    try:
        return main()
    except Exception as exc:  # a traceback would only confuse the pusher
        _say(sys.stderr, f"hook failed ({exc.__class__.__name__}); no build requested")
        return 0


if __name__ == "__main__":
    sys.exit(run())
