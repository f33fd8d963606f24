"""Write the OpenAPI document of the full app (what `chatbox dev` serves) to a file: `make openapi`.

Usage: `python -m chatbox.cli.openapi_export docs/openapi.json`. The document kept in the repo is
checked against the app by `tests/test_openapi.py`, so a route change that forgets it fails the suite.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from chatbox.asgi import create_app
from chatbox.compose import build_runtime, discover_platforms
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key


def build_openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document with the installed platforms, built on a throwaway SQLite database and vault
    key (nothing is served)."""
    with tempfile.TemporaryDirectory(prefix="chatbox-openapi-") as home:
        settings = Settings(home=Path(home), db_url=f"sqlite:///{Path(home) / 'chatbox.db'}", vault_key=generate_key())
        runtime = build_runtime(settings, platforms=discover_platforms())
        try:
            return create_app(runtime).openapi()
        finally:
            runtime.close()


def render_openapi_document() -> str:
    """The document as it is kept in the repo: sorted keys, two-space indent, trailing newline."""
    return json.dumps(build_openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m chatbox.cli.openapi_export PATH\n")
        return 2
    target = Path(args[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_openapi_document(), encoding="utf-8")
    sys.stdout.write(f"wrote {target}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
