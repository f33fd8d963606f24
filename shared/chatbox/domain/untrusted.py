"""Untrusted input, kept within bounds: NUL characters, JSON nesting, and what an error message may repeat.

- Postgres `text` and `jsonb` cannot hold U+0000 (SQLite can), so the two backends would disagree.
  Input through chatbox's own API is refused at the door (`refuse_nul`: a 422, the same on both);
  a verified platform push has its NUL characters removed instead (`load_platform_json`), so a
  person's message is never lost over an invisible character.
- Python's JSON parser recurses once per nesting level: `load_platform_json` measures the nesting
  of a body before parsing it, so 100,000 `[` are a 400, not a RecursionError.
- Error messages never repeat rejected input (it may be a secret, a path full of control
  characters, or 5,000 characters long): they say what is wrong and where. `shown_name` lets one
  name through only when it has the shape of a name, so "templates.focal_edit" stays readable.

Example:
    ```python
    data = load_platform_json(request.body, max_depth=PLATFORM_JSON_DEPTH)  # InvalidInputError if not JSON
    ```
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import AfterValidator

from chatbox.domain.errors import InvalidInputError

NUL = "\x00"
MAX_TEXT = 65_536
"""Longest message text chatbox takes, in characters: from a platform, from the agent, in an edit."""
PLATFORM_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects taken in a platform's push (real ones nest about ten deep)."""

_ESCAPE = re.compile(r"\\.", re.DOTALL)
_STRING = re.compile(r'"[^"]*"')
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
PLACEHOLDER = "<…>"


def refuse_nul(value: str) -> str:
    """A validator: `value` unchanged, or ValueError when it holds U+0000 (which Postgres cannot store)."""
    if NUL in value:
        raise ValueError("must not contain the NUL character (U+0000)")
    return value


NoNul = AfterValidator(refuse_nul)
"""`Annotated[str, ..., NoNul]`: a string field that refuses U+0000."""


def strip_nul(value: Any) -> Any:
    """A parsed JSON value with U+0000 removed from every string and key (call on bounded-depth values only)."""
    if isinstance(value, str):
        return value.replace(NUL, "")
    if isinstance(value, dict):
        return {strip_nul(key): strip_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [strip_nul(item) for item in value]
    return value


def nesting_exceeds(text: str, limit: int) -> bool:
    """Whether the JSON text nests arrays and objects deeper than `limit` (brackets inside strings do not count).

    Linear and without recursion: escapes and strings are cut out with regular expressions, then the
    brackets left are counted (only when there are more than `limit` of them at all).
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_A_BRACKET.sub("", _STRING.sub("", _ESCAPE.sub("", text)))
    depth = 0
    for bracket in brackets:
        if bracket in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder for every push: `json.loads` with an argument builds a new one per call.
_PLATFORM_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def load_platform_json(body: bytes, *, max_depth: int = PLATFORM_JSON_DEPTH) -> Any:
    """A verified platform push's JSON body: UTF-8, nested at most `max_depth` deep, without NUL characters.

    Raises:
        InvalidInputError: the body is not UTF-8 JSON (NaN and Infinity are not JSON), or nests too deep.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError("the body is not UTF-8 JSON") from exc
    if nesting_exceeds(text, max_depth):
        raise InvalidInputError(f"the body nests arrays or objects deeper than {max_depth} levels")
    try:
        data = _PLATFORM_DECODER.decode(text)
    except RecursionError as exc:  # not expected after the depth check; never a 500 all the same
        raise InvalidInputError(f"the body nests arrays or objects deeper than {max_depth} levels") from exc
    except ValueError as exc:
        raise InvalidInputError("the body is not JSON") from exc
    # A NUL reaches a parsed string only through the escape `\u0000` (raw control characters are not JSON).
    return strip_nul(data) if "\\u0000" in text else data


def shown_name(value: object) -> str:
    """How an error message may name a key or location taken from input: itself when it is an index or looks
    like a name (a letter or `_`, then at most 31 letters, digits or `_`), else a placeholder."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and _NAME.fullmatch(value):
        return value
    return PLACEHOLDER
