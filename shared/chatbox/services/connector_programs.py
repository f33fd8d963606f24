"""Container connections chatbox runs itself: their credentials at create, and what their program starts with.

On a runtime that can run programs (`chatbox dev`, `chatbox api`; never Lambda), a Signal or Discord
connection created without `config.outbound_url` is *managed*: chatbox mints the bearer it presents on
`/v1/send` (an `mcp_proxy_auth` credential of the account, so the send path is the one every container
connection uses), seals the connection's inbound token too (elsewhere only its hash is kept: a program
that chatbox starts, restarts, or that `chatbox connector run` starts by hand needs the token itself),
picks a free loopback port and sets `outbound_url=http://127.0.0.1:PORT/v1/send`. The config records
`managed: true`, which only chatbox sets, so that loopback URL is trusted as chatbox's own.

`program_launch` turns a managed connection into the program's command and environment: the contract's
variables (`connectors/CONTRACT.md`) plus the platform's own from `spec.program.env(ctx)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from chatbox.domain.errors import ConflictError, InvalidInputError, NotFoundError
from chatbox.domain.ids import new_token
from chatbox.domain.schemas import ConnectionStatus, CredentialKind
from chatbox.domain.vault import Vault
from chatbox.ports.connector import MANAGED_PROGRAM, OUTBOUND_AUTH_SECRET, OUTBOUND_CREDENTIAL, OUTBOUND_URL
from chatbox.ports.platforms import PlatformRegistry, PlatformSpec
from chatbox.services.credentials import add_credential, get_credential, reveal
from chatbox.store.models import Connection

INBOUND_CREDENTIAL = "inbound_credential_id"
# Keys of a connection's config that only chatbox writes.
RESERVED_CONFIG = (MANAGED_PROGRAM, INBOUND_CREDENTIAL)
MANAGED_CREDENTIALS = 2

# A free loopback port for a managed connector's `/v1/send` (the composition root gives one that binds a socket).
PortPicker = Callable[[], int]


def wants_managed_program(spec: PlatformSpec, config: Mapping[str, Any], pick_port: PortPicker | None) -> bool:
    """Whether a new connection becomes managed: a platform with a program, a runtime that runs programs, and
    no connector of the operator's own named (`outbound_url` or `outbound_credential_id`)."""
    return (
        pick_port is not None
        and spec.program is not None
        and OUTBOUND_URL not in config
        and OUTBOUND_CREDENTIAL not in config
    )


def check_program_input(spec: PlatformSpec, config: Mapping[str, Any], secrets: Mapping[str, str]) -> None:
    """InvalidInputError when the platform's program could not start with this connection's input."""
    if spec.program is not None and spec.program.check_input is not None:
        try:
            spec.program.check_input(config, secrets)
        except InvalidInputError as exc:
            raise InvalidInputError(
                f"{exc.message} (chatbox runs this connection's program, as it has no config.{OUTBOUND_URL})"
            ) from exc


def refuse_reserved_config(config: Mapping[str, Any]) -> None:
    """InvalidInputError when a tenant's config names a key only chatbox sets."""
    reserved = sorted(key for key in RESERVED_CONFIG if key in config)
    if reserved:
        raise InvalidInputError(
            "config." + ", config.".join(reserved) + " is set by chatbox itself; leave it out of the request"
        )


def stage_managed_program(
    db: Session,
    vault: Vault,
    *,
    account_id: str,
    platform: str,
    connection_id: str,
    inbound_token: str,
    pick_port: PortPicker,
) -> dict[str, Any]:
    """Seal the outbound bearer and the inbound token (staged, uncommitted) and return the config that makes the
    connection managed. The caller checked room for `MANAGED_CREDENTIALS` more credentials."""
    outbound = add_credential(
        db, vault, account_id, f"{platform}:{connection_id}:outbound_auth", CredentialKind.mcp_proxy_auth,
        new_token("cbo"),
    )  # fmt: skip
    inbound = add_credential(
        db, vault, account_id, f"{platform}:{connection_id}:inbound_token", CredentialKind.platform, inbound_token
    )
    return {
        MANAGED_PROGRAM: True,
        OUTBOUND_URL: f"http://127.0.0.1:{pick_port()}/v1/send",
        OUTBOUND_CREDENTIAL: outbound.id,
        INBOUND_CREDENTIAL: inbound.id,
    }


def is_managed(config: Mapping[str, Any]) -> bool:
    return config.get(MANAGED_PROGRAM) is True


@dataclass(frozen=True)
class ProgramLaunch:
    """How to start one managed connection's program: `python -m <module>` with `env` added."""

    connection_id: str
    platform: str
    module: str
    state_dir: Path
    env: Mapping[str, str] = field(repr=False)

    @property
    def secrets(self) -> list[str]:
        """The values in `env` no log line may show."""
        return [value for name, value in self.env.items() if name not in _PLAIN_VARIABLES and len(value) >= 8]


_PLAIN_VARIABLES = frozenset(
    {"CHATBOX_API_URL", "CHATBOX_CONNECTION_ID", "CONNECTOR_HOST", "CONNECTOR_PORT", "CONNECTOR_STATE_DIR"}
)


def program_launch(
    db: Session, vault: Vault, platforms: PlatformRegistry, connection_id: str, *, api_url: str, home: Path
) -> ProgramLaunch:
    """The program, environment and state folder (`<home>/connectors/<connection_id>`) of a managed connection.

    Raises:
        NotFoundError: no such connection.
        ConflictError: it is archived, its platform has no program here, or it is not managed (its operator
            runs the program elsewhere, with the inbound token they were given at create).
        VaultError: a sealed value cannot be opened with the configured keys.
    """
    from chatbox.services.connections import connection_context, get_connection

    connection: Connection = get_connection(db, None, connection_id)
    spec = platforms.get(connection.platform)
    if connection.status != ConnectionStatus.active:
        raise ConflictError(f"connection {connection_id} is {connection.status}; only active connections run")
    if spec is None or spec.program is None:
        raise ConflictError(f"connection {connection_id} is on {connection.platform}, which has no program here")
    config = dict(connection.config)
    if not is_managed(config):
        raise ConflictError(
            f"connection {connection_id} was created with config.{OUTBOUND_URL}: its operator runs its program, "
            "with the inbound token shown at create; chatbox does not keep that token"
        )
    ctx = connection_context(db, vault, connection)
    try:
        inbound = get_credential(db, connection.account_id, str(config.get(INBOUND_CREDENTIAL)))
    except NotFoundError as exc:
        raise ConflictError(
            f"the inbound token of connection {connection_id} is gone (its credential was deleted)"
        ) from exc
    port = urlsplit(str(config.get(OUTBOUND_URL, ""))).port
    state_dir = (home / "connectors" / connection_id).resolve()
    env = {
        "CHATBOX_API_URL": api_url.rstrip("/"),
        "CHATBOX_CONNECTION_ID": connection_id,
        "CHATBOX_INBOUND_TOKEN": reveal(vault, inbound),
        "CHATBOX_OUTBOUND_AUTH": ctx.secrets.get(OUTBOUND_AUTH_SECRET, ""),
        "CONNECTOR_HOST": "127.0.0.1",
        "CONNECTOR_PORT": str(port or 8080),
        "CONNECTOR_STATE_DIR": str(state_dir),
        **spec.program.env(ctx),
    }
    return ProgramLaunch(connection_id, connection.platform, spec.program.module, state_dir, env)
