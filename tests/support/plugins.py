"""Registering test platforms with a real `chatbox` process the way a third-party package does: a distribution's
`chatbox.platforms` entry points, found on PYTHONPATH."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def platform_plugin(folder: Path, **specs: str) -> str:
    """A PYTHONPATH under which `chatbox` also serves `specs` (name -> `module:SPEC`) and imports `tests.*`."""
    dist_info = folder / "site" / "chatbox_test_platforms-0.0.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: chatbox-test-platforms\nVersion: 0.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in specs.items())
    (dist_info / "entry_points.txt").write_text(f"[chatbox.platforms]\n{lines}")
    return f"{folder / 'site'}:{REPO_ROOT}"
