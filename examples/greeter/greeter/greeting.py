"""The greeting itself: plain functions, no I/O."""

MAX_NAME_LENGTH = 64


def greet(name: str | None = None) -> str:
    """Return a greeting for ``name``, or for the world when no name is given.

    Raises ``ValueError`` for a name that is too long or holds control characters.
    """
    name = (name or "").strip()
    if not name:
        return "Hello, world!"
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"name is longer than {MAX_NAME_LENGTH} characters")
    if not name.isprintable():
        raise ValueError("name contains control characters")
    return f"Hello, {name}!"
