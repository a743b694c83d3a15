"""Signatures of pipeline configurations, compatible with ``drone sign``.

A protected repository runs only configurations carrying a valid ``kind: signature``
document: an HMAC-SHA256, under the repository's signing key, of the raw text of every
*other* document of the file. The format is Drone's (drone-yaml's ``signer`` package), so a
file signed by ``drone sign`` verifies here and the other way round:

* the file is split into documents by lines, as Drone does it: a line starting with ``---``
  begins a new document (the line itself belongs to none), a line starting with ``...`` ends
  the file, and every kept line contributes its text plus ``\\n`` (a trailing ``\\r`` is
  dropped, as Go's line scanner does);
* the signed bytes are the concatenation of the documents that are not the signature;
* the signature document is ``kind: signature`` with ``hmac: <64 hex digits>``.

So the HMAC covers the configuration's text exactly, comments and key order included:
reformatting a signed file invalidates it, and so does any edit to a pipeline. What it does
not cover is the signature document itself (it cannot) and text after a ``...`` line (never
read by anyone). The key must be at least 32 bytes, as in Drone.

Documents are recognised as the signature by a top-level ``kind: signature`` line, without
parsing the YAML: this module runs before the configuration is parsed and must not depend
on a parser accepting hostile input. A file whose signature document is ambiguous (two of
them) does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

MIN_KEY_BYTES = 32

# A top-level key at column 0, optionally quoted, optionally followed by a comment.
_KIND_SIGNATURE = re.compile(rb"^kind:[ \t]*([\"']?)signature\1[ \t]*(?:#.*)?$", re.MULTILINE)
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_HMAC = re.compile(rb"^hmac:[ \t]*([\"']?)([0-9a-fA-F]*)\1[ \t]*(?:#.*)?$", re.MULTILINE)


class SignatureKeyError(ValueError):
    """The signing key is too short to make an unforgeable signature."""


@dataclass(frozen=True)
class RawDocument:
    """One document of a configuration file, as the bytes the signature covers."""

    data: bytes

    @property
    def is_signature(self) -> bool:
        return _KIND_SIGNATURE.search(self.data) is not None


def split_documents(config: bytes) -> list[RawDocument]:
    """The documents of ``config``, split line by line the way ``drone sign`` splits them."""
    documents: list[list[bytes]] = []
    current: list[bytes] | None = None
    lines = config.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline ending the last line does not start another one
    for raw_line in lines:
        line = raw_line[:-1] if raw_line.endswith(b"\r") else raw_line
        if line.startswith(b"---"):
            current = None
        if current is None:
            current = []
            documents.append(current)
        if line.startswith(b"---"):
            continue
        if line.startswith(b"..."):
            break
        current.append(line + b"\n")
    return [RawDocument(b"".join(parts)) for parts in documents]


def signed_payload(config: bytes) -> bytes:
    """The bytes a signature of ``config`` covers: every document but the signature."""
    return b"".join(doc.data for doc in split_documents(config) if not doc.is_signature)


def compute_signature(config: bytes, key: bytes) -> str:
    """The hex HMAC-SHA256 of ``config``'s signed payload under ``key``."""
    if len(key) < MIN_KEY_BYTES:
        raise SignatureKeyError(
            f"a configuration signing key needs at least {MIN_KEY_BYTES} bytes, not {len(key)}"
        )
    return hmac.new(key, signed_payload(config), hashlib.sha256).hexdigest()


def embedded_signature(config: bytes) -> str | None:
    """The ``hmac`` of the file's one signature document; None when there is none, when
    there are several, or when it has no well-formed ``hmac``."""
    signatures = [doc for doc in split_documents(config) if doc.is_signature]
    if len(signatures) != 1:
        return None
    found = list(_HMAC.finditer(signatures[0].data))
    if len(found) != 1:
        return None
    digest: bytes = found[0].group(2)
    if len(digest) != 2 * hashlib.sha256().digest_size:
        return None
    return digest.decode("ascii").lower()


def verify_signature(config: bytes, key: bytes) -> bool:
    """True when ``config`` carries one signature and it is the HMAC of the rest under
    ``key``; compared in constant time."""
    claimed = embedded_signature(config)
    if claimed is None:
        return False
    expected = compute_signature(config, key)
    return hmac.compare_digest(expected.encode("ascii"), claimed.encode("ascii"))


def sign_config(config: bytes, key: bytes) -> bytes:
    """``config`` with its signature document replaced (or added) at the end, written as
    ``drone sign --save`` writes it."""
    return with_signature(config, compute_signature(config, key))


def with_signature(config: bytes, signature: str) -> bytes:
    """``config`` with its signature document replaced (or added) by one holding
    ``signature`` (a hex HMAC, e.g. made by the server for ``bastion sign --save``)."""
    if not _HEX_DIGEST.fullmatch(signature):
        raise ValueError("a configuration signature is 64 hex digits")
    parts = [b"---\n" + doc.data for doc in split_documents(config) if not doc.is_signature]
    parts.append(b"---\nkind: signature\nhmac: " + signature.encode("ascii") + b"\n\n...\n")
    return b"".join(parts)
