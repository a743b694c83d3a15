"""Parsed ``.drone.yml`` files, remembered by their digest for the runner's stages.

Every stage of a build brings the same configuration (the whole file at the build's commit),
and parsing it is most of a short stage's CPU on the runner. ``parsed`` keeps the last
``CACHE_SIZE`` results by the SHA-256 of (file name, text): equal text parses to the same,
immutable ``ParseResult``, so sharing one between stages and threads is safe. Parse errors
are remembered too (the same text fails the same way).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from bastion.spec.parse import ParseResult, parse

CACHE_SIZE = 32

_cache: OrderedDict[bytes, ParseResult] = OrderedDict()
_lock = threading.Lock()


def parsed(config: str, filename: str) -> ParseResult:
    """``bastion.spec.parse(config, filename)``, from the cache when seen recently."""
    digest = hashlib.sha256(filename.encode("utf-8") + b"\0" + config.encode("utf-8")).digest()
    with _lock:
        hit = _cache.get(digest)
        if hit is not None:
            _cache.move_to_end(digest)
            return hit
    # Parsed outside the lock: two stages missing at once both parse, and both get a
    # correct result; the other stages of the runner do not wait for either.
    result = parse(config, filename=filename)
    with _lock:
        _cache[digest] = result
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return result


def clear() -> None:
    """Forget every parsed file (tests)."""
    with _lock:
        _cache.clear()
