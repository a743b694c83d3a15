"""The local forge: bare git repositories kept by the server, and the hook that reports pushes.

Layout under ``root`` (``<data_dir>/repos``)::

    <owner>/<name>.git/              bare repository, mode 0700 (the server's user only)
        hooks/post-receive           Bastion's hook (``_post_receive.py``), mode 0700; its
                                     shebang is the Python that created it, run with -I
        hooks/bastion-hook.json      the hook's settings: server URL, repository, signing
                                     key, CA file; mode 0600 (it holds a key)

A push runs ``post-receive``, which POSTs ``{"owner", "name", "updates": [{"before",
"after", "ref"}], "sent", "nonce"}`` to ``hook_url`` with ``X-Bastion-Repo: owner/name`` and
``X-Bastion-Signature: <hex HMAC-SHA256 of the body>``. The server hands the request to
``parse_local_hook``, which checks the signature *before* it parses anything.

Signing keys: the hook of each repository signs with its own key, derived from the server's
``hook_key`` and the repository's ``owner/name`` (``repo_hook_key``). The server needs only
``hook_key``; a key read from one repository's hook settings cannot sign pushes of another
repository. The settings live in a 0600 file beside the hook rather than in the repository's
``config`` because git rewrites ``config`` with the process umask (often world-readable) and
``git config`` tools print it freely. ``LocalForge.install_hook`` rewrites both files when the
server's URL, key or CA file change, or when the Python named in the shebang is gone.

Replays: each delivery carries its send time and a random nonce; ``parse_local_hook`` refuses
one older than five minutes, and the nonce makes every delivery's id (the body's sha256)
distinct, so the server's duplicate check drops a replay but never a genuine second push.

From a hook delivery to a build::

    events = parse_local_hook(request.headers, body, settings.hook_key)   # 401 / 400
    for event in events:                       # one per pushed branch or tag, none for deletions
        event = forge.enrich(event)            # commit message and author, annotated tag peeled
        config = forge.read_file(event.repo_owner, event.repo_name, event.after, ".drone.yml")

``parse_local_hook`` does not read the repository (it works from the request alone, so it can
run before the server has even looked the repository up); ``LocalForge.enrich`` fills what
only git knows. The runner gets the source as a git bundle (``LocalForge.bundle``).

Every git command runs with ``GIT_*`` variables of the server's environment removed,
``GIT_NO_REPLACE_OBJECTS=1`` (a pushed ``refs/replace/*`` must not change what the server
reads for a commit; the runner's clone would not see the replacement) and
``GIT_LITERAL_PATHSPECS=1`` (a config path is a path, never a pattern).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from bastion.scm._payload import load_object
from bastion.scm._refs import (
    BRANCH_PREFIX,
    MAX_FILE_BYTES,
    is_hex_sha,
    is_valid_ref,
    lower_headers,
    normalise_repo_path,
    require_ref,
    require_sha,
)
from bastion.scm.errors import ForgeError, WebhookError
from bastion.scm.events import EVENT_TAG, HookEvent, is_zero_sha

__all__ = [
    "HOOK_CONFIG_NAME",
    "MAX_FILE_BYTES",
    "CommitInfo",
    "LocalForge",
    "parse_local_hook",
    "repo_hook_key",
]

FORGE = "local"
SIGNATURE_HEADER = "X-Bastion-Signature"
REPO_HEADER = "X-Bastion-Repo"
HOOK_CONFIG_NAME = "bastion-hook.json"
MAX_HOOK_BODY_BYTES = 1 << 20
# a hook delivery older (or newer) than this is refused: a captured request cannot be
# replayed later, and the hook runs on the server's own host, so clocks agree
DEFAULT_HOOK_MAX_AGE = 300.0

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_GIT_TIMEOUT = 60.0
_BUNDLE_TIMEOUT = 600.0


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """A commit as ``git log`` reports it. ``timestamp`` is the author date (Unix seconds),
    which is what Drone shows as the build's commit time."""

    sha: str
    message: str
    author_name: str
    author_email: str
    committer: str
    committer_email: str
    timestamp: int


def repo_hook_key(hook_key: bytes, owner: str, name: str) -> bytes:
    """The key the hook of ``owner/name`` signs with: HMAC-SHA256 of the repository's name
    under the server's ``hook_key`` (a keyed derivation, so one repository's key tells
    nothing about another's or about ``hook_key``)."""
    message = b"bastion local hook\x00" + f"{owner}/{name}".encode()
    return hmac.new(hook_key, message, hashlib.sha256).digest()


def check_repo_name(value: str, what: str) -> str:
    """``value`` if it is a safe owner or repository name, else ``ValueError``.

    Letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, at most 100
    characters, no ``..``: it becomes one path component under the forge root, so ``/``,
    ``..``, a leading ``-`` (an option to git) or ``.`` (a hidden file) must never pass.
    """
    if not _NAME.fullmatch(value) or ".." in value or value.lower().endswith(".git"):
        raise ValueError(
            f"invalid {what} {value!r}: use letters, digits, '.', '_' and '-', starting with "
            "a letter or digit, at most 100 characters, no '..' and no '.git' suffix"
        )
    return value


def _check_sha(sha: str) -> str:
    if not is_hex_sha(sha):
        raise ValueError(f"invalid commit id {sha[:80]!r}: expected 40 or 64 lower-case hex digits")
    return sha


def _git_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(
        GIT_NO_REPLACE_OBJECTS="1",
        GIT_LITERAL_PATHSPECS="1",
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",
    )
    return env


class LocalForge:
    """Bare repositories under ``root`` that push to the server at ``hook_url``.

    ``hook_key`` is the server's secret for local hook deliveries (at least 16 bytes).
    ``ca_cert``: for an ``https`` ``hook_url`` with a private CA, the CA file the hook
    verifies the server with; by default ``BASTION_CA_CERT`` from the environment. It is
    written into each repository's hook settings when the repository is created.

    Errors: ``ValueError`` for malformed arguments (names, commit ids, paths);
    ``ForgeError`` for what git reports (unknown repository or commit, git failing, a file
    over ``MAX_FILE_BYTES``), as the API clients in ``forges`` do, so the server handles
    every forge alike. ``FileExistsError`` from ``create`` for a repository that exists.
    """

    def __init__(
        self,
        root: Path,
        *,
        hook_url: str,
        hook_key: bytes,
        ca_cert: Path | None = None,
    ) -> None:
        parts = urlsplit(hook_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"hook_url must be an http(s) URL, got {hook_url!r}")
        if len(hook_key) < 16:
            raise ValueError("hook_key must be at least 16 bytes")
        if ca_cert is None and os.environ.get("BASTION_CA_CERT"):
            ca_cert = Path(os.environ["BASTION_CA_CERT"])
        self.root = Path(root)
        self.hook_url = hook_url
        self._hook_key = hook_key
        self.ca_cert = ca_cert

    def __repr__(self) -> str:  # never show the key
        return f"LocalForge(root={str(self.root)!r}, hook_url={self.hook_url!r})"

    # -- repositories -------------------------------------------------------------------
    def path(self, owner: str, name: str) -> Path:
        """Where ``owner/name`` lives (whether or not it exists)."""
        check_repo_name(owner, "owner")
        check_repo_name(name, "repository name")
        return self.root / owner / f"{name}.git"

    def exists(self, owner: str, name: str) -> bool:
        return (self.path(owner, name) / "HEAD").is_file()

    def create(self, owner: str, name: str, *, default_branch: str = "main") -> Path:
        """Create the bare repository ``owner/name`` with its hook, all or nothing.

        The repository is built in a temporary directory beside its final place and renamed
        into it, so a failure leaves nothing behind and nobody sees a half-made repository.
        """
        target = self.path(owner, name)
        if not is_valid_ref(BRANCH_PREFIX + default_branch):
            raise ValueError(f"invalid default branch {default_branch!r}")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        # claim the name first: mkdir is atomic, so two concurrent creates cannot both win
        target.mkdir(mode=0o700)  # FileExistsError when it exists
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".new", dir=target.parent))
        try:
            self._git(
                None,
                "init",
                "--bare",
                "--quiet",
                "--template=",  # no sample hooks, and no system template's hooks either
                f"--initial-branch={default_branch}",
                str(staging),
            )
            # reject corrupt or malformed objects at push time rather than at build time
            self._git(staging, "config", "receive.fsckObjects", "true")
            self._install_hook(staging, owner, name)
            # rename(2) replaces the empty claimed directory atomically
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            target.rmdir()
            raise
        return target

    def install_hook(self, owner: str, name: str) -> None:
        """(Re)write the hook of an existing repository with this forge's current settings:
        after ``hook_url``, ``hook_key`` or ``ca_cert`` changed, or when the Python that
        wrote the hook's shebang is gone. Each file is replaced atomically."""
        self._install_hook(self._existing(owner, name), owner, name)

    def _install_hook(self, repo: Path, owner: str, name: str) -> None:
        if not sys.executable or any(ch.isspace() for ch in sys.executable):
            raise ForgeError(
                FORGE, f"cannot write a hook shebang for the interpreter {sys.executable!r}"
            )
        hooks = repo / "hooks"
        hooks.mkdir(mode=0o700, exist_ok=True)
        settings = {
            "url": self.hook_url,
            "repo": f"{owner}/{name}",
            "key": repo_hook_key(self._hook_key, owner, name).hex(),
            "ca_cert": str(self.ca_cert) if self.ca_cert is not None else "",
            "timeout": 5,
        }
        _write_private(hooks / HOOK_CONFIG_NAME, json.dumps(settings, indent=2) + "\n", 0o600)
        source = Path(__file__).with_name("_post_receive.py").read_text(encoding="utf-8")
        # -I: isolated mode, so the pusher's PYTHON* variables and user site cannot change
        # what the hook runs; the hook needs the standard library only
        _write_private(hooks / "post-receive", f"#!{sys.executable} -I\n{source}", 0o700)

    # -- reading ------------------------------------------------------------------------
    def read_file(self, owner: str, name: str, sha: str, path: str) -> bytes | None:
        """The content of ``path`` at commit ``sha``, ``None`` if there is no such file.

        ``ForgeError`` for an unknown repository or commit, a symbolic link (not followed)
        or a file over ``MAX_FILE_BYTES``.
        """
        repo = self._existing(owner, name)
        commit = self._resolve_commit(repo, _check_sha(sha))
        path = normalise_repo_path(path)
        listing = self._git(repo, "ls-tree", "-l", "-z", commit, "--", path).stdout
        for entry in listing.split(b"\x00"):
            meta, _, entry_path = entry.partition(b"\t")
            if entry_path.decode("utf-8", errors="surrogateescape") != path:
                continue
            mode, kind, object_id, size = meta.decode("ascii").split()
            if mode == "120000":
                raise ForgeError(
                    FORGE, f"{path} at {commit[:12]} is a symbolic link; links are not followed"
                )
            if kind != "blob":
                return None  # a directory or a submodule is not a config file
            if int(size) > MAX_FILE_BYTES:
                raise ForgeError(
                    FORGE, f"{path} at {commit[:12]} is {size} bytes, over the 1 MiB limit"
                )
            return self._git(repo, "cat-file", "blob", object_id).stdout
        return None

    def fetch_file(self, owner: str, name: str, sha: str, path: str) -> bytes | None:
        """``read_file`` under the name of ``forges.ForgeClient``, so the local forge can be
        used wherever a forge client is expected."""
        return self.read_file(owner, name, sha, path)

    def commit(self, owner: str, name: str, sha: str) -> CommitInfo:
        """Message, author and committer of ``sha`` (an annotated tag is peeled to its
        commit; ``CommitInfo.sha`` is the commit's id)."""
        repo = self._existing(owner, name)
        commit = self._resolve_commit(repo, _check_sha(sha))
        out = self._git(
            repo,
            "log",
            "-1",
            "--no-show-signature",
            "--encoding=UTF-8",
            "--format=%H%x00%an%x00%ae%x00%cn%x00%ce%x00%at%x00%B",
            commit,
            "--",
        ).stdout.decode("utf-8", errors="replace")
        fields = out.split("\x00", 6)
        if len(fields) != 7:
            raise ForgeError(FORGE, f"unexpected git log output for {commit[:12]}")
        full_sha, author_name, author_email, committer, committer_email, when, message = fields
        return CommitInfo(
            sha=full_sha,
            message=message.rstrip("\n"),
            author_name=author_name,
            author_email=author_email,
            committer=committer,
            committer_email=committer_email,
            timestamp=int(when) if when.isdigit() else 0,
        )

    def branch_head(self, owner: str, name: str, branch: str) -> str | None:
        """The commit at the tip of ``branch``; None when there is no such branch (or no such
        repository). The name is passed after ``--end-of-options`` and as a full ref, so it
        can neither be an option nor match anything but a branch."""
        result = self._git(
            self.path(owner, name),
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            f"refs/heads/{branch}^{{commit}}",
            check=False,
        )
        sha = result.stdout.decode("ascii", errors="replace").strip()
        return sha if result.returncode == 0 and is_hex_sha(sha) else None

    def on_branch(self, owner: str, name: str, sha: str, branch: str) -> bool:
        """Whether commit ``sha`` is on ``branch``: its head or one of its ancestors."""
        head = self.branch_head(owner, name, branch)
        if head is None:
            return False
        if head == sha:
            return True
        repo = self.path(owner, name)
        ancestor = self._git(
            repo, "merge-base", "--is-ancestor", _check_sha(sha), head, check=False
        )
        return ancestor.returncode == 0

    def enrich(self, event: HookEvent) -> HookEvent:
        """``event`` with what only the repository knows: the commit message and author,
        and for an annotated tag the commit it points to as ``after``."""
        info = self.commit(event.repo_owner, event.repo_name, event.after)
        return replace(
            event,
            after=info.sha,
            message=info.message,
            author_name=info.author_name,
            author_email=info.author_email,
        )

    def bundle(
        self, owner: str, name: str, sha: str, dest: Path, *, branch: str = "bastion"
    ) -> None:
        """Write a git bundle to ``dest`` from which ``git clone dest dir`` checks out ``sha``
        (on branch ``branch``); ``git -C dir checkout <sha>`` works as well.

        The bundle is cut from a throw-away repository that borrows the real one's objects
        (``objects/info/alternates``) and holds exactly ``HEAD`` and ``refs/heads/<branch>``
        at the commit. A temporary ref in the real repository would be visible to fetches
        while it exists, would race with a second bundle of the same commit, and could not
        live under ``refs/heads`` (a pushed branch could collide), while ``git clone``
        copies only ``refs/heads`` from a bundle.
        """
        repo = self._existing(owner, name)
        commit = self._resolve_commit(repo, _check_sha(sha))
        if not is_valid_ref(BRANCH_PREFIX + branch):
            raise ValueError(f"invalid branch name {branch!r}")
        with tempfile.TemporaryDirectory(prefix="bastion-bundle-") as scratch_dir:
            scratch = Path(scratch_dir) / "scratch.git"
            self._git(None, "init", "--bare", "--quiet", "--template=", str(scratch))
            alternates = scratch / "objects" / "info" / "alternates"
            alternates.parent.mkdir(parents=True, exist_ok=True)
            alternates.write_text(f"{(repo / 'objects').resolve()}\n", encoding="utf-8")
            self._git(scratch, "update-ref", f"{BRANCH_PREFIX}{branch}", commit)
            self._git(scratch, "symbolic-ref", "HEAD", f"{BRANCH_PREFIX}{branch}")
            self._git(
                scratch,
                "bundle",
                "create",
                "--quiet",
                str(Path(dest).resolve()),
                "HEAD",
                f"{BRANCH_PREFIX}{branch}",
                timeout=_BUNDLE_TIMEOUT,
            )

    # -- helpers -------------------------------------------------------------------------
    def _existing(self, owner: str, name: str) -> Path:
        repo = self.path(owner, name)
        if not (repo / "HEAD").is_file():
            raise ForgeError(FORGE, f"repository {owner}/{name} does not exist")
        return repo

    def _resolve_commit(self, repo: Path, sha: str) -> str:
        """The full id of the commit ``sha`` names (peeling a tag), or ``ForgeError``."""
        result = self._git(
            repo, "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}", check=False
        )
        if result.returncode != 0:
            raise ForgeError(FORGE, f"commit {sha[:12]} is not in {repo.parent.name}/{repo.stem}")
        return result.stdout.decode("ascii").strip()

    def _git(
        self,
        repo: Path | None,
        *args: str,
        check: bool = True,
        timeout: float = _GIT_TIMEOUT,
    ) -> subprocess.CompletedProcess[bytes]:
        command = ["git"]
        if repo is not None:
            command.append(f"--git-dir={repo}")
        command.extend(args)
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                env=_git_env(),
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise ForgeError(FORGE, "git is not installed (no 'git' on PATH)") from exc
        except subprocess.TimeoutExpired as exc:
            raise ForgeError(FORGE, f"git {args[0]} took longer than {timeout:.0f} s") from exc
        if check and result.returncode != 0:
            detail = result.stderr.decode("utf-8", errors="replace").strip().splitlines()
            reason = detail[-1] if detail else f"exit code {result.returncode}"
            raise ForgeError(FORGE, f"git {args[0]} failed: {reason}")
        return result


def _write_private(path: Path, text: str, mode: int) -> None:
    """Write ``path`` with ``mode`` from its first byte (never briefly readable by others),
    through a temporary file renamed over it, so a reader sees the old or the new file."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600; the umask does not apply to fchmod
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def parse_local_hook(
    headers: Mapping[str, str],
    body: bytes,
    key: bytes,
    *,
    max_age: float = DEFAULT_HOOK_MAX_AGE,
    now: float | None = None,
) -> list[HookEvent]:
    """The events of one push to the local forge, after checking that its hook signed it.

    ``key`` is the server's ``hook_key``. Order: the repository named by ``X-Bastion-Repo``
    gives the signing key (``repo_hook_key``); ``X-Bastion-Signature`` is checked against
    the raw body (``WebhookError(401)`` if missing or wrong); only then is the body parsed
    (``WebhookError(400)`` if malformed); a body naming another repository than the header,
    or sent more than ``max_age`` seconds ago, is refused (401).

    One ``HookEvent`` per updated branch (``push``) or tag (``tag``); deletions and other
    refs are left out, so the list may be empty (nothing to build). Message and author are
    empty: ``LocalForge.enrich`` fills them from the repository. Each event's
    ``delivery_id`` is the body's sha256 followed by ``.<index>``, unique per event and the
    same on a redelivery, so the server can deduplicate event by event.
    """
    if len(body) > MAX_HOOK_BODY_BYTES:
        raise WebhookError(413, "local hook: body is over the 1 MiB limit")
    lowered = lower_headers(headers)
    slug = lowered.get(REPO_HEADER.lower(), "")
    owner, _, name = slug.partition("/")
    try:
        check_repo_name(owner, "owner")
        check_repo_name(name, "repository name")
    except ValueError as exc:
        raise WebhookError(401, f"local hook refused: no valid {REPO_HEADER} header") from exc
    provided = lowered.get(SIGNATURE_HEADER.lower(), "").strip().lower()
    if not provided:
        raise WebhookError(401, f"local hook refused: no {SIGNATURE_HEADER} header")
    expected = hmac.new(repo_hook_key(key, owner, name), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), provided.encode("ascii", errors="replace")):
        raise WebhookError(401, f"local hook refused: {SIGNATURE_HEADER} does not match")

    what = "local hook payload"
    payload = load_object(body, what)
    if payload.text("owner") != owner or payload.text("name") != name:
        raise WebhookError(
            401, f"local hook refused: the body names another repository than {slug}"
        )
    sent = payload.integer("sent")
    current = time.time() if now is None else now
    if abs(current - sent) > max_age:
        raise WebhookError(
            401,
            f"local hook refused: sent {current - sent:.0f} s ago, over the {max_age:.0f} s limit",
        )
    digest = hashlib.sha256(body).hexdigest()
    events: list[HookEvent] = []
    for index, update in enumerate(payload.objs("updates")):
        ref = require_ref(update.text("ref"), f"updates[{index}].ref", what)
        before = require_sha(update.text("before"), f"updates[{index}].before", what)
        after = require_sha(update.text("after"), f"updates[{index}].after", what)
        if is_zero_sha(after):
            continue  # a deleted branch or tag: nothing to build
        if ref.startswith(BRANCH_PREFIX):
            event, branch, tag = "push", ref.removeprefix(BRANCH_PREFIX), ""
        elif ref.startswith("refs/tags/"):
            event, branch, tag = EVENT_TAG, "", ref.removeprefix("refs/tags/")
        else:
            continue  # notes, replace refs, ...: not something to build
        events.append(
            HookEvent(
                forge=FORGE,
                delivery_id=f"{digest}.{index}",
                event=event,
                repo_owner=owner,
                repo_name=name,
                ref=ref,
                before=before,
                after=after,
                branch=branch,
                source_branch=branch,
                tag=tag,
            )
        )
    return events
