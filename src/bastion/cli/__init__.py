"""The ``bastion`` command line: Typer commands that call the engine and its backends.

The CLI never reaches into server internals; for local runs (``bastion exec``) it compiles
with ``bastion.engine`` and runs on ``bastion.backends.docker``.
"""
