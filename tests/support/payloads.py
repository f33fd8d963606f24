"""Recorded platform payloads under tests/payloads/<platform>/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PAYLOADS = Path(__file__).resolve().parent.parent / "payloads"


def load_payload(platform: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / platform / f"{name}.json").read_text())
    return data


def payload_bytes(platform: str, name: str, **changes: Any) -> bytes:
    """The recorded payload as a request body, with top-level fields replaced (e.g. a new update_id)."""
    return json.dumps({**load_payload(platform, name), **changes}).encode()
