"""Typed reading of a webhook's JSON body, with errors that name the missing field.

A forge payload is a deep tree of optional values. ``Obj`` wraps one JSON object together
with its path from the root (``pull_request.head.repo``), so a missing or mistyped field
becomes ``WebhookError(400, "github pull_request payload: pull_request.head.sha is
missing")`` instead of a ``KeyError`` deep inside a parser. Only what a parser asks for is
checked: extra fields, and fields Bastion does not read, are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from bastion.scm.errors import WebhookError

# go-scm reads at most 10 MB of a webhook body; larger bodies are refused, not truncated.
MAX_BODY_BYTES = 10_000_000


def load_object(body: bytes, what: str) -> Obj:
    """Parse ``body`` as a JSON object; ``WebhookError(400)`` says why it is not one."""
    if len(body) > MAX_BODY_BYTES:
        raise WebhookError(413, f"{what}: body of {len(body)} bytes is over the 10 MB limit")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookError(400, f"{what}: body is not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise WebhookError(400, f"{what}: body is nested too deeply") from exc
    if not isinstance(data, dict):
        raise WebhookError(400, f"{what}: body is a JSON {_kind(data)}, expected an object")
    return Obj(data, "", what)


def _a(value: object) -> str:
    """``value``'s JSON type with its article, for messages: "an array", "a string"."""
    kind = _kind(value)
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class Obj:
    """One JSON object of a payload, and the path that leads to it."""

    __slots__ = ("_data", "_path", "_what")

    def __init__(self, data: Mapping[str, object], path: str, what: str) -> None:
        self._data = data
        self._path = path
        self._what = what

    def _field(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def _fail(self, key: str, problem: str) -> WebhookError:
        return WebhookError(400, f"{self._what}: {self._field(key)} {problem}")

    def has(self, key: str) -> bool:
        """The key is present and not null."""
        return self._data.get(key) is not None

    # -- objects -------------------------------------------------------------------------
    def obj(self, key: str) -> Obj:
        found = self.opt_obj(key)
        if found is None:
            raise self._fail(key, "is missing")
        return found

    def opt_obj(self, key: str) -> Obj | None:
        value = self._data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._fail(key, f"is {_a(value)}, expected an object")
        return Obj(value, self._field(key), self._what)

    def objs(self, key: str) -> list[Obj]:
        """A list of objects; missing or null is an empty list."""
        value = self._data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._fail(key, f"is {_a(value)}, expected an array")
        items: list[Obj] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise self._fail(f"{key}[{index}]", f"is {_a(item)}, expected an object")
            items.append(Obj(item, f"{self._field(key)}[{index}]", self._what))
        return items

    # -- scalars -------------------------------------------------------------------------
    def text(self, key: str) -> str:
        """A required, non-empty string."""
        value = self.opt_text(key)
        if not value:
            raise self._fail(key, "is missing" if key not in self._data else "is empty")
        return value

    def opt_text(self, key: str, default: str = "") -> str:
        value = self._data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self._fail(key, f"is {_a(value)}, expected a string")
        return value

    def integer(self, key: str) -> int:
        value = self._data.get(key)
        if value is None:
            raise self._fail(key, "is missing")
        # bool is an int in Python; a forge never means True when it sends an id
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, f"is {_a(value)}, expected an integer")
        return value

    def opt_id(self, key: str) -> str:
        """A numeric id as text ("" when absent); ids are compared, never computed with."""
        value = self._data.get(key)
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise self._fail(key, f"is {_a(value)}, expected an id")
        return str(value)

    def opt_bool(self, key: str, default: bool = False) -> bool:
        value = self._data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._fail(key, f"is {_a(value)}, expected true or false")
        return value
