"""greeter: a tiny greeting library and HTTP API, the example project of Bastion's demo."""

from greeter.greeting import greet

__all__ = ["greet"]
