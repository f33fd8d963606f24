"""Fail a layer build whose packages are not exactly the ones requirements.lock pins (what CI tested).

Usage: python infra/check_layer.py build/layer/python requirements.lock

Reads each `*.dist-info/METADATA` under the layer folder; exits 1 naming every package whose version differs
from the lock, or that the lock does not pin at all. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import re
import sys
from email.parser import HeaderParser
from pathlib import Path


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[canonical(name.split("[")[0].strip())] = version.split(";")[0].strip()
    return pins


def installed(layer: Path) -> dict[str, str]:
    found = {}
    for metadata in layer.glob("*.dist-info/METADATA"):
        headers = HeaderParser().parsestr(metadata.read_text(encoding="utf-8", errors="replace"))
        found[canonical(headers["Name"])] = headers["Version"]
    return found


def drift(layer: Path, lock: Path) -> list[str]:
    pins = pinned(lock)
    problems = []
    for name, version in sorted(installed(layer).items()):
        if name not in pins:
            problems.append(f"{name} {version}: not in {lock.name}")
        elif pins[name] != version:
            problems.append(f"{name} {version}: {lock.name} pins {pins[name]}")
    return problems


def main(argv: list[str]) -> int:
    layer, lock = Path(argv[1]), Path(argv[2])
    if not installed(layer):
        print(f"no packages found in {layer}", file=sys.stderr)  # noqa: T201 - a build tool's report
        return 1
    problems = drift(layer, lock)
    for problem in problems:
        print(f"layer drift: {problem}", file=sys.stderr)  # noqa: T201
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
