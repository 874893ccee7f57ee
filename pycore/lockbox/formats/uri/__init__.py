"""The ``.uri`` archive format (docs/formats/URI.md): a list of CRC-checked chunks.

``UriFormat`` is the :class:`lockbox.protocol.FormatSpec`; ``write_uri`` writes an
archive from a directory or from a stream of ``(EntryInfo, content)`` pairs.
"""

from .reader import UriFormat, UriLimits, UriSession, iter_file
from .writer import WriteReport, write_uri

__all__ = ["UriFormat", "UriLimits", "UriSession", "iter_file", "WriteReport", "write_uri"]
