"""Helpers shared by the test suites (``from tests.support.plans import ...``).

* ``support.plans``: build ``Plan`` / ``StepPlan`` / ``ContainerSpec`` by hand, with the
  hardened defaults of ``Hardening()``, without going through the compiler.
* ``support.running``: drive one step through a backend (start, output, wait, remove).
* ``support.resources``: find and remove Docker resources of a run by label.
* ``support.reporters``: ``Recorder``, an executor reporter that remembers what it is told.
"""
