"""Public, read-only descriptions of archive entries, the same for every format."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # datetime is imported where a time is formatted, not by every command
    import datetime as _dt

__all__ = ["EntryInfo"]


@dataclass(frozen=True, init=False)
class EntryInfo:
    path: str
    type: str  # "file", "dir" or "symlink"
    mode: int
    mtime_ns: int
    size: int = 0
    stored_size: int = 0
    blake3: str = ""  # hex BLAKE3-256 of the content
    target: str = ""
    owner: str = ""  # formats that record them (e.g. .uri); "" when unknown
    group: str = ""

    def __init__(self, path: str, type: str, mode: int, mtime_ns: int, size: int = 0,
                 stored_size: int = 0, blake3: str = "", target: str = "", owner: str = "",
                 group: str = "") -> None:
        # The dataclass's frozen __init__, in one step: a listing makes one per entry.
        self.__dict__.update(path=path, type=type, mode=mode, mtime_ns=mtime_ns, size=size,
                             stored_size=stored_size, blake3=blake3, target=target,
                             owner=owner, group=group)

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    @property
    def is_dir(self) -> bool:
        return self.type == "dir"

    @property
    def is_file(self) -> bool:
        return self.type == "file"

    @property
    def mtime(self) -> _dt.datetime:
        import datetime as _dt

        return _dt.datetime.fromtimestamp(self.mtime_ns / 1e9, tz=_dt.UTC)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["name"] = self.name
        d["mtime"] = self.mtime.isoformat()
        if self.type != "file":
            for k in ("size", "stored_size", "blake3"):
                d.pop(k)
        elif not self.blake3:  # a format without content hashes
            d.pop("blake3")
        if self.type != "symlink":
            d.pop("target")
        for k in ("owner", "group"):
            if not d[k]:
                d.pop(k)
        return d
