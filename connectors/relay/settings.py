"""The environment interface of every container program, read once at start.

A missing or malformed variable stops the program before it does anything, with one line on stderr
naming the variable (never its value: it may be a token) and exit status 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError, field_validator

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Secret = Annotated[SecretStr, Field(min_length=1)]

EXIT_CONFIG = 2


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value) < len("http://x"):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


class RelaySettings(BaseModel):
    """What every container program reads: field `x_y` is the environment variable `X_Y`.

    A program subclasses this with its own fields (Signal adds `signal_account`, `signal_cli_url`);
    `SecretStr` fields are redacted from every log line by `run`.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    chatbox_api_url: NonEmpty = Field(description="chatbox's public URL, e.g. https://chatbox.example.com")
    chatbox_connection_id: NonEmpty = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    chatbox_inbound_token: Secret
    chatbox_outbound_auth: Secret = Field(description="the bearer chatbox presents on /v1/send")
    connector_host: NonEmpty = "0.0.0.0"
    connector_port: int = Field(default=8080, ge=0, le=65535)
    connector_state_dir: Path = Field(description="a writable folder that survives restarts (the spool lives here)")
    # How long the inbox waits at most between two attempts while chatbox is unreachable.
    connector_retry_max_seconds: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("chatbox_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("connector_state_dir")
    @classmethod
    def _state_dir(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError("must be an existing folder")
        if not os.access(value, os.W_OK):
            raise ValueError("must be writable")
        return value

    def secret_values(self) -> list[str]:
        """Every secret this program holds, for the log redactor."""
        return [
            value.get_secret_value()
            for name in type(self).model_fields
            if isinstance(value := getattr(self, name), SecretStr) and value.get_secret_value()
        ]


SettingsT = TypeVar("SettingsT", bound=RelaySettings)


def read_settings(model_cls: type[SettingsT], environ: Mapping[str, str]) -> SettingsT:
    """`model_cls` from `environ` (upper-case field names; unset or empty means the default).

    Raises:
        ValueError: one line naming the first variable that is missing or malformed.
    """
    values = {name: environ[name.upper()] for name in model_cls.model_fields if environ.get(name.upper(), "") != ""}
    try:
        return model_cls.model_validate(values)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        variable = str(error["loc"][0]).upper() if error["loc"] else model_cls.__name__
        if error["type"] == "missing":
            raise ValueError(f"{variable} is not set") from None
        raise ValueError(f"{variable} is malformed: {error['msg']}") from None


def load(model_cls: type[SettingsT], environ: Mapping[str, str] | None = None) -> SettingsT:
    """`model_cls` from the process environment; on a missing or malformed variable print one line and exit 2."""
    try:
        return read_settings(model_cls, os.environ if environ is None else environ)
    except ValueError as exc:
        _die(f"configuration error: {exc}")


def _die(line: str) -> NoReturn:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_CONFIG)
