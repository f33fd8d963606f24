"""Where the CLI finds its home: CHATBOX_HOME, else the nearest `.chatbox` folder in the working directory or
its parents (so every command works from anywhere inside a project, as git does)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HOME_FOLDER = ".chatbox"


@dataclass(frozen=True)
class HomeNotFoundError(Exception):
    """No CHATBOX_HOME and no `.chatbox` folder in `looked_in` (the working directory, then each parent)."""

    looked_in: tuple[Path, ...]

    def __str__(self) -> str:
        places = ", ".join(str(path / HOME_FOLDER) for path in self.looked_in)
        return (
            f"no chatbox home: CHATBOX_HOME is unset and none of {places} exists; "
            "run `chatbox dev` once in the project folder, or set CHATBOX_HOME (or CHATBOX_DB_URL)"
        )


def find_home(start: Path) -> Path:
    """The nearest `.chatbox` folder at `start` or above it.

    Raises:
        HomeNotFoundError: none of them holds one.
    """
    start = start.resolve()
    looked_in = (start, *start.parents)
    for folder in looked_in:
        candidate = folder / HOME_FOLDER
        if candidate.is_dir():
            return candidate
    raise HomeNotFoundError(looked_in)
