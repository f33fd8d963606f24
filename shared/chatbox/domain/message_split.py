"""Splitting a long outbound text into platform-sized messages, at the most natural boundary that fits.

Connectors use it for their platform's limit (Telegram 4096 UTF-16 units, Slack 40,000 characters).

Example:
    ```python
    split_text("a\\n\\nb", 3)  # ["a", "b"]: paragraphs first, then lines, then words, then hard cuts
    ```
"""

from __future__ import annotations

from collections.abc import Callable

# Tried in order: a paragraph break, a line break, a space. The separator is dropped at the cut.
_BOUNDARIES = ("\n\n", "\n", " ")


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, the way Telegram counts a message's characters."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int, measure: Callable[[str], int] = len) -> list[str]:
    """`text` as consecutive chunks, each with `measure(chunk) <= limit`, in order.

    Each cut falls on the last paragraph break that fits, else the last line break, else the last
    space, else mid-word. Whitespace at a cut is dropped; nothing
    else is lost or reordered. Chunks that would be empty are skipped.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    chunks: list[str] = []
    rest = text
    while measure(rest) > limit:
        fits = len(_longest_prefix(rest, limit, measure))
        cut, skip = _boundary_cut(rest, fits)
        if cut <= 0:
            cut, skip = fits, 0
        chunk = rest[:cut].rstrip()
        if chunk:
            chunks.append(chunk)
        rest = rest[cut + skip :].lstrip("\n ")
    if rest.strip():
        chunks.append(rest)
    return chunks


def _longest_prefix(text: str, limit: int, measure: Callable[[str], int]) -> str:
    """The longest prefix of `text` that measures within `limit` (binary search: measure is monotonic)."""
    low, high = 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if measure(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def _boundary_cut(text: str, fits: int) -> tuple[int, int]:
    """Where to cut `text` so the chunk is at most `fits` long: (index, separator length), or (0, 0)."""
    for separator in _BOUNDARIES:
        # A separator may start right at `fits`: the chunk before it still fits.
        index = text.rfind(separator, 0, fits + len(separator))
        if index > 0:
            return index, len(separator)
    return 0, 0
