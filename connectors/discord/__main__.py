"""`python -m connectors.discord`: the Discord container program (see program.py and ../CONTRACT.md)."""

from __future__ import annotations

from connectors.discord.program import serve
from connectors.discord.settings import DiscordSettings
from connectors.relay import load, run


def main() -> None:
    settings = load(DiscordSettings)

    run(lambda stop: serve(settings, stop), settings)


if __name__ == "__main__":
    main()
