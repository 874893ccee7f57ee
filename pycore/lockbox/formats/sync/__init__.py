"""The ``.sync`` container of sync-rs (docs/formats/SYNC.md): a ZIP holding
``manifest.toml``, a STORED ``payload`` read in place, ``sync.wasm`` (the update hook),
and optional ``context.json`` and ``sync.proof``.

Modules: ``zipfmt`` (the pure ZIP codec), ``container`` (the layout, sans-I/O),
``writer`` (sync-rs's byte layout, atomic rewrites), ``manifest``, ``didkey``,
``signing``, ``vault``, ``session`` (``SyncFormat``/``SyncSession`` behind the
format-neutral protocol), ``hook/`` (the update hook runner), ``guest`` (guest.v1).
Submodules are imported where they are used: importing this package is cheap.
"""

__all__: list[str] = []
