"""Trust policy: what a pipeline may ask of the runner, and why a request is refused.

Imports only ``bastion.spec``. Decisions carry their reasons so that a refusal can say which
step, which field, and which setting would allow it.
"""
