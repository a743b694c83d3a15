"""The runner daemon: lease stages from a server, run them in hardened containers, report back.

* ``run_runner(settings, stop)``: the whole daemon, until ``stop`` is set
  (``bastion runner`` and ``bastion server --with-runner`` call it).
* ``RunnerSettings``: server, token, name, capacity, labels, backend, TLS options.

Inside: ``daemon`` (poll loop, capacity, shutdown), ``stage`` (one lease from details to
``complete``), ``source`` (clone on the host), ``reporter`` / ``uploader`` (numbered log
lines and step updates, batched and resent until acknowledged), ``lease`` (heartbeats,
cancel), ``cleanup`` (labels and run ids that find a lost stage's containers).

Imports: ``engine``, ``backends``, ``rpc``, ``client``, ``spec``, ``policy`` — never
``server`` or ``cli``.
"""

from __future__ import annotations

from bastion.runner.daemon import Runner, RunnerError, run_runner
from bastion.runner.settings import RunnerSettings, RunnerSettingsError, parse_labels

__all__ = [
    "Runner",
    "RunnerError",
    "RunnerSettings",
    "RunnerSettingsError",
    "parse_labels",
    "run_runner",
]
