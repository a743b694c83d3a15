"""The runner endpoints (``/rpc/v1/...``) of the contract in ``bastion.rpc.messages``.

Every call is authenticated with the runner's own token (``auth.require_runner``); calls
about a stage also need the live lease on it (``auth.require_lease``): anything else gets 409
with a message and nothing about the stage.
"""
