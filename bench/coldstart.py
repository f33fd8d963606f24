"""Cold start of the Lambda functions: import time and deployment package size.

1. Import time. Each function's `handler.py` is imported in a fresh interpreter, configured the way
   the template configures it on Lambda (CHATBOX_QUEUE=sqs, so the SQS client is built too), and
   compared with, in the same run, a bare `import fastapi, mangum, sqlalchemy, psycopg` (and that
   plus `mcp` for the MCP function). Every measurement is `python -c <import>` wall time minus
   `python -c pass`, median of --runs, the candidates interleaved round by round so that machine
   noise hits them alike. What is not measured: reading the secrets from Secrets Manager (a network
   call at cold start on Lambda, not reproducible here) and the first request itself.
2. Package size, unzipped. A function ships its own folder plus the ChatboxLayer: shared/chatbox and
   what shared/requirements.txt installs. The layer is installed here the way `sam build` installs
   it (pip, manylinux aarch64 wheels for CPython 3.12, no .pyc), into a temporary folder. Offline
   (`--offline`, or when pip cannot reach the index), the sizes of the same distributions installed
   in this virtualenv are summed instead (x86_64 / this Python: close, not identical).

With `--layer DIR --python PYTHON` it measures a built layer instead of the dev virtualenv: the handlers and
the baseline import from DIR (what `make layer` builds, bytecode included) under PYTHON, with no bytecode
written (Lambda's /opt is read-only), and the size is DIR's, bytecode counted. The Lambda layer is arm64;
to measure on an x86_64 machine build the same layer (same pins, same bytecode) for x86_64:
`make layer LAYER_DIR=build/layer-x86_64 LAYER_PLATFORMS="manylinux_2_34_x86_64 manylinux_2_28_x86_64
manylinux_2_17_x86_64 manylinux2014_x86_64"`, then
`.venv/bin/python bench/coldstart.py --layer build/layer-x86_64/python --python python3.12 --runtime DIR`
(DIR: boto3 installed for python3.12 with its bytecode, which the Lambda runtime provides).

Run by hand: `.venv/bin/python bench/coldstart.py` (about 1-2 min with the default 15 runs).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ("api", "inbound", "delivery", "mcp")
BASELINE = "import fastapi, mangum, sqlalchemy, psycopg"
BASELINE_MCP = BASELINE + ", mcp"

# The targets of the issue "Serverless deployment".
TARGET_IMPORT_RATIO = 1.25
TARGET_PACKAGE_MB = 100.0  # bytecode included (issue "A deploy that works the first time")
MB = 1_000_000


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Candidate:
    label: str
    code: str


def lambda_environment(home: Path) -> dict[str, str]:
    """What the template sets, with values that work offline (the SQS client is built, never called)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATBOX_", "AWS_"))}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "shared")]),
            "PYTHONDONTWRITEBYTECODE": "",
            "CHATBOX_HOME": str(home),
            "CHATBOX_DB_URL": f"sqlite:///{home / 'chatbox.db'}",
            "CHATBOX_VAULT_KEY": "A" * 43 + "=",
            "CHATBOX_PUBLIC_URL": "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com",
            "CHATBOX_QUEUE": "sqs",
            "CHATBOX_SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/chatbox-deliveries.fifo",
            "CHATBOX_SQS_DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/dead.fifo",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "POWERTOOLS_SERVICE_NAME": "chatbox-bench",
        }
    )
    return env


INTERPRETER = [sys.executable]


def run_once(code: str, env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([*INTERPRETER, "-c", code], env=env, cwd=cwd, check=True, timeout=120)
    return time.perf_counter() - start


def measure_imports(candidates: list[Candidate], runs: int, env: dict[str, str], cwd: Path) -> dict[str, float]:
    """Median seconds per candidate, interpreter start-up subtracted. One warm-up round (disk cache) first."""
    samples: dict[str, list[float]] = {c.label: [] for c in candidates}
    empty: list[float] = []
    for round_index in range(runs + 1):
        empty_time = run_once("pass", env, cwd)
        times = {c.label: run_once(c.code, env, cwd) for c in candidates}
        if round_index == 0:
            continue
        empty.append(empty_time)
        for label, seconds in times.items():
            samples[label].append(seconds)
    startup = statistics.median(empty)
    return {label: statistics.median(values) - startup for label, values in samples.items()}


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def layer_dependencies_installed(target: Path) -> bool:
    """`pip install` the layer's requirements the way `sam build` does (arm64, CPython 3.12)."""
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check",
        "--target", str(target), "--implementation", "cp", "--python-version", "3.12",
        "--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_28_aarch64", "--only-binary=:all:",
        "-r", str(ROOT / "shared" / "requirements.txt"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        say(f"  pip could not build the layer here ({result.stderr.strip().splitlines()[-1:]}); using --offline sizes")
    return result.returncode == 0


def requirement_names(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0] for line in lines if line]


def installed_closure_size(names: list[str]) -> int:
    """Installed bytes of these distributions and everything they require, in this virtualenv."""
    seen: set[str] = set()
    pending = list(names)
    total = 0
    while pending:
        name = pending.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        total += sum(
            (f.size or 0) for f in (dist.files or []) if "__pycache__" not in f.parts and not str(f).startswith("..")
        )
        for requirement in dist.requires or []:
            if "extra ==" in requirement and "binary" not in requirement:
                continue
            pending.append(re.split(r"[\[<>=!~; (]", requirement, maxsplit=1)[0])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="imports per candidate (median)")
    parser.add_argument("--offline", action="store_true", help="size the layer from this virtualenv, no pip")
    parser.add_argument("--layer", type=Path, help="a built layer's python/ folder to import from (make layer)")
    parser.add_argument("--python", help="the interpreter for --layer (python3.12, as on Lambda)")
    parser.add_argument("--runtime", type=Path, help="what the Lambda runtime adds for --layer: a folder with boto3")
    args = parser.parse_args()
    if args.layer:
        INTERPRETER[:] = [args.python or "python3.12"]
        version = subprocess.run([*INTERPRETER, "-V"], capture_output=True, text=True, check=True).stdout.strip()
        say(f"measuring the built layer {args.layer} with {version} (no bytecode written)")

    say(f"chatbox cold start, {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="chatbox-coldstart-") as scratch:
        home = Path(scratch)
        env = lambda_environment(home)
        if args.layer:
            paths = [ROOT, args.layer.resolve()] + ([args.runtime.resolve()] if args.runtime else [])
            env["PYTHONPATH"] = os.pathsep.join(str(path) for path in paths)
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        candidates = [Candidate("baseline", BASELINE), Candidate("baseline+mcp", BASELINE_MCP)] + [
            Candidate(name, f"import functions.{name}.handler") for name in FUNCTIONS
        ]
        say(f"\n1. import time, median of {args.runs}, interpreter start-up subtracted")
        medians = measure_imports(candidates, args.runs, env, home)
        say(f"   {'import':<40} {'ms':>7} {'ratio':>6}  target")
        say(f"   {'fastapi+mangum+sqlalchemy+psycopg':<40} {medians['baseline'] * 1000:7.0f} {'1.00':>6}")
        say(f"   {'  ... + mcp':<40} {medians['baseline+mcp'] * 1000:7.0f} {'1.00':>6}")
        for name in FUNCTIONS:
            base = medians["baseline+mcp" if name == "mcp" else "baseline"]
            ratio = medians[name] / base
            verdict = "ok" if ratio <= TARGET_IMPORT_RATIO else "MISSED"
            label = f"functions/{name}" + (" (vs baseline+mcp)" if name == "mcp" else "")
            say(f"   {label:<40} {medians[name] * 1000:7.0f} {ratio:6.2f}  <= {TARGET_IMPORT_RATIO}: {verdict}")

        say("\n2. deployment package, unzipped (function folder + ChatboxLayer)")
        if args.layer:
            built = sum(f.stat().st_size for f in args.layer.rglob("*") if f.is_file())
            say(f"   the built layer {args.layer}, bytecode included: {built / MB:.1f} MB")
            for name in FUNCTIONS:
                total = tree_size(ROOT / "functions" / name) + built
                verdict = "ok" if total / MB <= TARGET_PACKAGE_MB else "MISSED"
                say(f"   functions/{name:<10} {total / MB:6.1f} MB  <= {TARGET_PACKAGE_MB:.0f} MB: {verdict}")
            return
        layer_dir = home / "layer"
        chatbox_size = tree_size(ROOT / "shared" / "chatbox")
        if not args.offline and layer_dependencies_installed(layer_dir):
            dependencies, how = tree_size(layer_dir), "pip, manylinux aarch64 cp312 wheels"
        else:
            dependencies = installed_closure_size(requirement_names(ROOT / "shared" / "requirements.txt"))
            how = "this virtualenv's installed distributions"
        layer = chatbox_size + dependencies
        say(f"   layer dependencies ({how}): {dependencies / MB:.1f} MB; shared/chatbox: {chatbox_size / MB:.2f} MB")
        for name in FUNCTIONS:
            folder = ROOT / "functions" / name
            total = tree_size(folder) + layer
            verdict = "ok" if total / MB <= TARGET_PACKAGE_MB else "MISSED"
            say(f"   functions/{name:<10} {total / MB:6.1f} MB  <= {TARGET_PACKAGE_MB:.0f} MB: {verdict}")


if __name__ == "__main__":
    main()
