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
REMEMBERED_BLOCK = 1024  # a repeated call's block is tens of bytes; larger ones are not worth keeping


def table_state(table: Any) -> tuple[int, object, int]:
    """What a block can change: every added entry is a new object at the front (compared by identity: an
    equal header added again still shifts the indexes), a size update changes the maximum."""
    entries = table.dynamic_entries
    return len(entries), entries[0] if entries else None, table._maxsize


def same_table(before: tuple[int, object, int], after: tuple[int, object, int]) -> bool:
    return before[0] == after[0] and before[1] is after[1] and before[2] == after[2]


class HeaderBlockDecoder:
    def __init__(self, max_decoded: int) -> None:
        # a list over the advertised size is still decoded whole, to keep the table, and refused per call
        self._decoder = Decoder(max_header_list_size=max_decoded)
        self._remembered: dict[bytes, Headers] = {}

    def decode(self, block: bytes) -> Headers:
        """The block's fields as raw bytes; raises hpack's HPACKError for a malformed block."""
        headers = self._remembered.get(block)
        if headers is not None:
            return headers
        table = self._decoder.header_table
        before = table_state(table)
        headers = tuple((name, value) for name, value in self._decoder.decode(block, raw=True))
        if not same_table(before, table_state(table)):
            self._remembered.clear()
        elif len(block) <= REMEMBERED_BLOCK and len(self._remembered) < REMEMBERED:
            self._remembered[block] = headers
        return headers
