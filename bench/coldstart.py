"""Cold start of the Lambda functions: import time and deployment package size.

1. Import time. Each function's `handler.py` is imported in a fresh interpreter, configured the way
   the template configures it on Lambda (CHATBOX_QUEUE=sqs, so the SQS client is built too), and
   compared with, in the same run, a bare `import fastapi, mangum, sqlalchemy, psycopg` (and that
   plus `mcp` for the MCP function). Every measurement is `python -c <import>` wall time minus
   `python -c pass`, median of --runs, the candidates interleaved round by round so that machine
   noise hits them alike. What is not measured: reading the secrets from Secrets Manager (a network
   call at cold start on Lambda, not reproducible here) and the first request itself.
2. Package size, unzipped, with `--layers`: each function's folder plus the layers infra/layers.toml gives it,
   as built, bytecode included.

With `--layers DIR --python PYTHON` it measures the built layers (what `make layer` builds into DIR, bytecode
included) instead of the dev virtualenv: each handler is imported as Lambda imports it, from its own folder with
only its layers on the path (the baseline from the base and web layers, plus mcp's for the MCP baseline), under
PYTHON, with no bytecode written (Lambda's /opt is read-only). The Lambda layers are arm64; to measure on an x86_64
machine build the same layers (same pins, same bytecode) for x86_64:
`make layer LAYER_DIR=build/layers-x86_64 LAYER_PLATFORMS="manylinux_2_34_x86_64 manylinux_2_28_x86_64
manylinux_2_17_x86_64 manylinux2014_x86_64"`, then
`.venv/bin/python bench/coldstart.py --layers build/layers-x86_64 --python python3.12 --runtime DIR`
(DIR: boto3 installed for python3.12 with its bytecode, which the Lambda runtime provides).

Run by hand: `.venv/bin/python bench/coldstart.py` (about 1-2 min with the default 15 runs).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "infra"))
import build_layers  # noqa: E402 - infra/ holds build scripts, not a package

FUNCTIONS = ("api", "inbound", "delivery", "mcp")
BASELINE = "import fastapi, mangum, sqlalchemy, psycopg"
BASELINE_MCP = BASELINE + ", mcp"

# The targets of the issue "Serverless deployment".
TARGET_IMPORT_RATIO = 1.25
TARGET_PACKAGE_MB = 100.0  # bytecode included (issue "A deploy that works the first time")
MB = 1024 * 1024  # MiB, as Lambda counts its 250 MB


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Candidate:
    label: str
    code: str
    path: tuple[Path, ...] = ()  # PYTHONPATH, when not the environment's


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


def run_once(candidate: Candidate, env: dict[str, str], cwd: Path) -> float:
    if candidate.path:
        env = {**env, "PYTHONPATH": os.pathsep.join(str(path) for path in candidate.path)}
    start = time.perf_counter()
    subprocess.run([*INTERPRETER, "-c", candidate.code], env=env, cwd=cwd, check=True, timeout=120)
    return time.perf_counter() - start


def measure_imports(candidates: list[Candidate], runs: int, env: dict[str, str], cwd: Path) -> dict[str, float]:
    """Median seconds per candidate, interpreter start-up subtracted. One warm-up round (disk cache) first."""
    samples: dict[str, list[float]] = {c.label: [] for c in candidates}
    empty: list[float] = []
    for round_index in range(runs + 1):
        empty_time = run_once(Candidate("startup", "pass"), env, cwd)
        times = {c.label: run_once(c, env, cwd) for c in candidates}
        if round_index == 0:
            continue
        empty.append(empty_time)
        for label, seconds in times.items():
            samples[label].append(seconds)
    startup = statistics.median(empty)
    return {label: statistics.median(values) - startup for label, values in samples.items()}


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def layered_candidates(layers: Path, runtime: list[Path]) -> list[Candidate]:
    """The baselines and handlers, each with only the built layers a function gets (infra/layers.toml) on its path,
    imported as Lambda imports them: `handler` from the function's own folder."""
    config = build_layers.load()

    def path(names: list[str], folder: Path | None = None) -> tuple[Path, ...]:
        return (*([folder] if folder else []), *((layers / name / "python").resolve() for name in names), *runtime)

    return [
        Candidate("baseline", BASELINE, path(["base", "web"])),
        Candidate("baseline+mcp", BASELINE_MCP, path(["base", "web", "mcp"])),
    ] + [
        Candidate(name, "import handler", path(config["functions"][name], ROOT / "functions" / name))
        for name in FUNCTIONS
    ]


def report_sizes(layers: Path) -> None:
    config = build_layers.load()
    say("\n2. deployment package, unzipped: the function folder + its layers (infra/layers.toml), bytecode included")
    for name in config["layers"]:
        say(f"   layer {name:<10} {tree_size(layers / name) / MB:6.1f} MB")
    for name, size in build_layers.function_sizes(config, layers).items():
        verdict = "ok" if size / MB <= TARGET_PACKAGE_MB else "MISSED"
        say(f"   functions/{name:<10} {size / MB:6.1f} MB  <= {TARGET_PACKAGE_MB:.0f} MB: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="imports per candidate (median)")
    parser.add_argument("--layers", type=Path, help="the built layers' folder to import from (make layer)")
    parser.add_argument("--python", help="the interpreter for --layers (python3.12, as on Lambda)")
    parser.add_argument("--runtime", type=Path, help="what the Lambda runtime adds for --layers: a folder with boto3")
    args = parser.parse_args()
    if args.layers:
        INTERPRETER[:] = [args.python or "python3.12"]
        version = subprocess.run([*INTERPRETER, "-V"], capture_output=True, text=True, check=True).stdout.strip()
        say(f"measuring the built layers in {args.layers} with {version} (no bytecode written)")

    say(f"chatbox cold start, {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="chatbox-coldstart-") as scratch:
        home = Path(scratch)
        env = lambda_environment(home)
        if args.layers:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            candidates = layered_candidates(args.layers, [args.runtime.resolve()] if args.runtime else [])
        else:
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

        if args.layers:
            report_sizes(args.layers)
        else:
            say("\n2. deployment package: build the layers (make layer) and pass --layers")


if __name__ == "__main__":
    main()
