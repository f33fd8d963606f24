"""The parrot platform's spec: a container platform with a program chatbox can run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chatbox.domain.errors import InvalidInputError
from chatbox.ports.connector import ConnectionContext
from chatbox.ports.platforms import ConnectionField, ConnectorProgram, PlatformMode, PlatformSpec


def _check_input(config: Mapping[str, Any], _secrets: Mapping[str, str]) -> None:
    if not isinstance(config.get("greeting", "hello"), str):
        raise InvalidInputError("config.greeting must be a string")


def _env(ctx: ConnectionContext) -> dict[str, str]:
    return {"PARROT_GREETING": str(ctx.config.get("greeting", "hello"))}


SPEC = PlatformSpec(
    name="parrot",
    label="Parrot",
    mode=PlatformMode.container,
    summary="A test platform whose program chatbox runs.",
    config=(ConnectionField("greeting", "what the program says when it starts", False),),
    program=ConnectorProgram("tests.platforms.parrot", env=_env, check_input=_check_input),
)
