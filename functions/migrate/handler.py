"""Lambda entry for the deploy's database step: a CloudFormation custom resource runs it on every create and
update of the stack, before the other functions change (they depend on it in template.yaml).

It migrates the schema to head and, while the database has no account, creates the first one with the key
the stack generated (CHATBOX_BOOTSTRAP_API_KEY_SECRET_ARN; the operator reads it once, see infra/README.md).
Deleting the stack leaves the database alone. The answer goes to the pre-signed `ResponseURL`, as
CloudFormation expects of a custom resource; a failure fails (and rolls back) the deploy, with a reason
that names the error's type, never its text (which could carry a connection string).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from chatbox.adapters.aws_lambda import lambda_logger, lambda_settings
from chatbox.services.database_setup import set_up_database
from chatbox.store.database import Database

logger = lambda_logger("chatbox-migrate")
settings = lambda_settings()
PHYSICAL_ID = "chatbox-database-schema"
RESPONSE_TIMEOUT_SECONDS = 30


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    status, reason, data = "SUCCESS", "", {}
    if event.get("RequestType") in ("Create", "Update"):
        try:
            data = _set_up()
        except Exception as exc:  # noqa: BLE001 - every failure is reported to CloudFormation, which rolls back
            logger.exception("database setup failed")
            status = "FAILED"
            reason = f"database setup failed ({type(exc).__name__}); see {context.log_stream_name}"
    response = {
        "Status": status,
        "Reason": reason or "ok",
        "PhysicalResourceId": PHYSICAL_ID,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": data,
    }
    _respond(event["ResponseURL"], response)
    return response


def _set_up() -> dict[str, str]:
    database = Database(settings.db_url, pool_size=0)
    try:
        setup = set_up_database(database, bootstrap_api_key=settings.bootstrap_api_key)
    finally:
        database.dispose()
    created = setup.first_account
    logger.info("database ready", extra={"schema": setup.schema, "created_first_account": created is not None})
    return {"Schema": setup.schema, "FirstAccountId": created.account_id if created else ""}


def _respond(url: str, body: dict[str, Any]) -> None:
    # The pre-signed S3 URL is signed for a PUT with no content type.
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="PUT", headers={"content-type": ""})  # noqa: S310
    with urllib.request.urlopen(request, timeout=RESPONSE_TIMEOUT_SECONDS) as answer:  # noqa: S310 - CloudFormation's URL
        answer.read()
