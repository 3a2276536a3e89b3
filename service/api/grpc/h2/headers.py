"""Request header blocks decoded by ``hpack``, remembering the blocks that leave the HPACK table unchanged.

A client repeating a call sends the same bytes each time once its headers are in the table (indexed fields,
literals without indexing); decoding them again in pure Python costs more than the rest of our HTTP/2
framing. A remembered decoding stays right only while the table it was decoded against stays the same, so
any block that changes the table forgets them all.
"""

from __future__ import annotations

from typing import Any

from hpack import Decoder

Headers = tuple[tuple[bytes, bytes], ...]
REMEMBERED = 256


def table_state(table: Any) -> tuple[int, int, int, int]:
    entries = table.dynamic_entries
    return len(entries), id(entries[0]) if entries else 0, table._current_size, table._maxsize


class HeaderBlockDecoder:
    def __init__(self, max_header_list: int) -> None:
        self._decoder = Decoder(max_header_list_size=max_header_list)
        self._remembered: dict[bytes, Headers] = {}

    def decode(self, block: bytes) -> Headers:
        """The block's fields as raw bytes; raises hpack's HPACKError for a malformed block."""
        headers = self._remembered.get(block)
        if headers is not None:
            return headers
        table = self._decoder.header_table
        before = table_state(table)
        headers = tuple((name, value) for name, value in self._decoder.decode(block, raw=True))
        if table_state(table) != before:
            self._remembered.clear()
        elif len(self._remembered) < REMEMBERED:
            self._remembered[block] = headers
        return headers
