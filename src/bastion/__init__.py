"""Bastion: a secure-by-default, Drone-compatible, container-native CI/CD platform.

The packages and the direction of their imports are described in ``docs/architecture.md``:
``spec`` (the .drone.yml language) → ``policy`` (what a repository may run) → ``engine``
(compile a pipeline into a plan and run it on a backend) → ``backends`` (Docker, fake) →
``cli`` (the ``bastion`` command).
"""

from __future__ import annotations

__version__ = "0.1.0"
