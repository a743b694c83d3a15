"""The server↔runner wire contract: pydantic messages, endpoint paths, protocol version.

Both sides import these types and nothing else of each other, so the contract is visible in
one place. See ``bastion.rpc.messages``.
"""
