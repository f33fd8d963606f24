"""Build the Lambda layers infra/layers.toml declares, each function's share checked against a size limit.

Usage: python infra/build_layers.py OUT --python312 PYTHON --max-mb 100 --platform manylinux_2_34_aarch64 ...

For each layer, in the file's order: pip installs its requirements constrained to requirements.lock into
OUT/<layer>/python as CPython 3.12 wheels for the given platforms, removes the distributions the layers under it
already ship (and those it drops), fails on a version drift from the lock (check_layer.py), copies its code,
prunes, and compiles python3.12 bytecode. Then it prints each function's size (its layers plus its folder) and
fails when one exceeds the limit. Standard library only, plus the project's pip.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from check_layer import canonical, drift, installed

ROOT = Path(__file__).resolve().parent.parent
LAYERS_FILE = ROOT / "infra" / "layers.toml"
LOCK = ROOT / "requirements.lock"
MB = 1024 * 1024


def load(path: Path = LAYERS_FILE) -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads(path.read_text())
    return config


def under(config: dict[str, Any], layer: str) -> list[str]:
    """Every layer `layer` sits on, directly or not."""
    found: list[str] = []
    for name in config["layers"].get(layer, {}).get("on", []):
        for below in [*under(config, name), name]:
            if below not in found:
                found.append(below)
    return found


def problems(config: dict[str, Any]) -> list[str]:
    """What makes the file unbuildable or a function incomplete: a layer on a later or unknown one, a function
    without the layers its layers sit on, more than Lambda's five layers for one function."""
    found: list[str] = []
    order = list(config["layers"])
    for position, (name, layer) in enumerate(config["layers"].items()):
        found.extend(
            f"layer {name} sits on {below}, which is not declared before it"
            for below in layer.get("on", [])
            if below not in order[:position]
        )
    for function, layers in config["functions"].items():
        unknown = [name for name in layers if name not in config["layers"]]
        if unknown:
            found.append(f"function {function}: unknown layers {unknown}")
            continue
        missing = sorted({below for name in layers for below in under(config, name)} - set(layers))
        if missing:
            found.append(f"function {function} lacks {missing}, which its layers sit on")
        if len(layers) > 5:  # noqa: PLR2004 - Lambda's limit of layers per function
            found.append(f"function {function} has {len(layers)} layers; Lambda allows 5")
    return found


def _remove_distribution(site: Path, dist_info: Path) -> None:
    record = dist_info / "RECORD"
    if record.is_file():
        for line in record.read_text().splitlines():
            relative = line.split(",")[0]
            target = (site / relative).resolve()
            if relative and target.is_relative_to(site.resolve()) and target.is_file():
                target.unlink()
    shutil.rmtree(dist_info, ignore_errors=True)


def _remove_empty_folders(site: Path) -> None:
    for folder in sorted((p for p in site.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def remove_distributions(site: Path, names: set[str]) -> None:
    """Remove the distributions named (canonical names) from a --target folder, by their RECORD."""
    for dist_info in site.glob("*.dist-info"):
        if canonical(dist_info.name.split("-")[0]) in names:
            _remove_distribution(site, dist_info)
    _remove_empty_folders(site)


def size_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def _pip_install(site: Path, requirements: list[str], platforms: list[str]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listing:
        listing.write("\n".join(requirements) + "\n")
        listing.flush()
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(site)]
        command += ["-r", listing.name, "-c", str(LOCK), "--implementation", "cp", "--python-version", "3.12"]
        command += ["--only-binary=:all:", *(arg for tag in platforms for arg in ("--platform", tag))]
        subprocess.run(command, check=True)  # noqa: S603 - the project's own pip


def build_layer(config: dict[str, Any], name: str, out: Path, python312: str, platforms: list[str]) -> None:
    layer = config["layers"][name]
    site = out / name / "python"
    shutil.rmtree(out / name, ignore_errors=True)
    site.mkdir(parents=True)
    _pip_install(site, layer["requirements"], platforms)
    shipped_below = {dist for below in under(config, name) for dist in installed(out / below / "python")}
    remove_distributions(site, shipped_below | {canonical(dist) for dist in layer.get("drop", [])})
    shutil.rmtree(site / "bin", ignore_errors=True)
    drifted = drift(site, LOCK)
    if drifted:
        sys.exit("\n".join(f"layer {name} drift: {problem}" for problem in drifted))
    for code in layer.get("code", []):
        shutil.copytree(ROOT / code, site / Path(code).name, ignore=shutil.ignore_patterns("__pycache__", "Dockerfile"))
    for folder in layer.get("prune", []):
        shutil.rmtree(site / folder)
    for cache in list(site.rglob("__pycache__")):
        shutil.rmtree(cache)
    # /opt is read-only on Lambda: without .pyc files every cold start compiles every module. unchecked-hash: the
    # .pyc is used without a look at the source's mtime (zip extraction resets it).
    compile_command = [python312, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    compile_command += ["-s", str(site), "-p", "/opt/python", str(site)]
    subprocess.run(compile_command, check=True)  # noqa: S603 - the given python3.12


def function_sizes(config: dict[str, Any], out: Path) -> dict[str, int]:
    layer_sizes = {name: size_bytes(out / name) for name in config["layers"]}
    return {
        function: size_bytes(ROOT / "functions" / function) + sum(layer_sizes[name] for name in layers)
        for function, layers in config["functions"].items()
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--python312", required=True)
    parser.add_argument("--platform", action="append", required=True, dest="platforms")
    parser.add_argument("--max-mb", type=float, required=True)
    args = parser.parse_args(argv)
    config = load()
    for problem in problems(config):
        sys.exit(f"infra/layers.toml: {problem}")
    for name in config["layers"]:
        build_layer(config, name, args.out, args.python312, args.platforms)
        print(f"layer {name}: {size_bytes(args.out / name) / MB:.1f} MB unzipped")  # noqa: T201 - a build report
    over = []
    for function, size in function_sizes(config, args.out).items():
        layers = " + ".join(config["functions"][function])
        print(f"function {function}: {size / MB:.1f} MB unzipped ({layers} + its folder)")  # noqa: T201
        if size > args.max_mb * MB:
            over.append(function)
    if over:
        print(f"over {args.max_mb:g} MB: {', '.join(over)}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
