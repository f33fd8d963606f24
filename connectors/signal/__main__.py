"""`python -m connectors.signal`: the Signal container program (see program.py and ../CONTRACT.md)."""

from __future__ import annotations

from connectors.relay import load, run
from connectors.signal.program import serve
from connectors.signal.settings import SignalSettings


def main() -> None:
    settings = load(SignalSettings)

    run(lambda stop: serve(settings, stop), settings)


if __name__ == "__main__":
    main()
