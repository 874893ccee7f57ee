"""The local vault (CPython only; docs/VAULT.md): private identities encrypted at rest
(:mod:`.store`), the trusted-recipients address book (:mod:`.recipients`), and the unlock
agent that keeps archive content keys in memory for a while (:mod:`.agent`, its client
:mod:`.agent_client`, and the helpers the CLI calls, :mod:`.unlock_cache`). Where each
lives: :mod:`.paths`.

Nothing is imported here: the package imports cleanly everywhere (Pyodide included), and
each module pulls in what it needs (sockets, ``fcntl``, ``ctypes``) only when used.
"""

__all__: list[str] = []
