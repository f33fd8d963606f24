"""What a deploy does to the database before the new code serves: migrate it, and create the first account.

Run by the deploy's migrate function (a CloudFormation custom resource, `functions/migrate`); safe to run
on every deploy, concurrently too (the migration holds an advisory lock on Postgres, and the bootstrap
creates an account only while there is none).
"""

from __future__ import annotations

from dataclasses import dataclass

from chatbox.services.accounts import IssuedKey, bootstrap
from chatbox.store.database import Database
from chatbox.store.migrate import upgrade_to_head
from chatbox.store.schema_version import SCHEMA_HEAD


@dataclass(frozen=True)
class DatabaseSetup:
    schema: str  # the revision the database is at now
    first_account: IssuedKey | None  # created by this run, else None (an account existed)


def set_up_database(db: Database, *, bootstrap_api_key: str = "") -> DatabaseSetup:
    """Bring the schema to head, then create the first account with `bootstrap_api_key` when there is none.

    Args:
        bootstrap_api_key: the first account's API key (CHATBOX_BOOTSTRAP_API_KEY, >= 32 characters); empty
            leaves the first account to `chatbox bootstrap`.

    Raises:
        InvalidInputError: the bootstrap key is too short.
        SQLAlchemyError: the database is unreachable or a migration failed (nothing is half-applied).
    """
    upgrade_to_head(db.engine)
    if not bootstrap_api_key:
        return DatabaseSetup(SCHEMA_HEAD, None)
    with db.session() as session:
        return DatabaseSetup(SCHEMA_HEAD, bootstrap(session, api_key=bootstrap_api_key))
