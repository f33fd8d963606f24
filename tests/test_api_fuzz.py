"""A bounded schemathesis run against the app in-process, on both databases.

Every operation of the OpenAPI document is called with generated requests, valid and invalid, on resources
that exist (a mailbox, a connection and a credential of the calling account, so the requests reach past the
404), with a real API key, or the connection's inbound token on the inbound route. Then stateful sequences
follow the links schemathesis infers between operations (a created credential's `id` into
`/v1/credentials/{credential_id}`, ...). A 5xx, a status the document does not list for the operation, or
a body off its schema fails the test. Derandomized and without an example database: every run sends the
same requests.

schemathesis's pytest integration (`from_fixture(...).parametrize()`) does not run under pytest 9 yet, so
the operations are driven through its public strategies (`APIOperation.as_strategy`) with Hypothesis.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup
from schemathesis.schemas import APIOperation, BaseSchema

from tests.conftest import AccountKey
from tests.support.api import create_connection, create_credential, create_mailbox

EXAMPLES_PER_MODE = 10
STATEFUL_SCENARIOS = 25
STATEFUL_STEPS = 8
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance")
INBOUND_PATH = "/v1/connections/{connection_id}/messages"
Operation = APIOperation[Any, Any, Any, Any]

BOUNDED = settings(
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as generated, in bounded time
    suppress_health_check=list(HealthCheck),
)


@dataclass(frozen=True)
class Existing:
    """Resources of the calling account that the generated requests address."""

    path_parameters: dict[str, str]
    api_key: str
    inbound_token: str

    def headers_for(self, operation: Operation) -> dict[str, str]:
        token = self.inbound_token if operation.path == INBOUND_PATH else self.api_key
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def existing(client: TestClient, account: AccountKey) -> Existing:
    mailbox = create_mailbox(client, account)
    connection = create_connection(client, account, mailbox["id"], platform="signal")
    credential = create_credential(client, account)
    return Existing(
        path_parameters={
            "mailbox_id": mailbox["id"],
            "connection_id": connection["id"],
            "credential_id": credential["id"],
        },
        api_key=account.api_key,
        inbound_token=connection["inbound_token"],
    )


@pytest.fixture
def api_schema(client: TestClient) -> BaseSchema:
    config = SchemathesisConfig.from_dict(
        {"checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}}}
    )
    return schemathesis.openapi.from_asgi("/openapi.json", client.app, config=config)


def operations(schema: BaseSchema) -> Iterator[Operation]:
    """Every operation, the archiving ones (DELETE) last so the others still find their resources live."""
    found = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the OpenAPI document does not load: {result.err()}"
        found.append(result.ok())
    return iter(sorted(found, key=lambda operation: operation.method.upper() == "DELETE"))


def fuzz(operation: Operation, mode: GenerationMode, existing: Existing) -> str | None:
    """Call `operation` with EXAMPLES_PER_MODE generated cases; its first failure, described, or None."""
    names = {parameter.name for parameter in operation.path_parameters}
    bound = {name: value for name, value in existing.path_parameters.items() if name in names}
    headers = existing.headers_for(operation)

    @settings(BOUNDED, max_examples=EXAMPLES_PER_MODE)
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=bound))
    def call(case: Case[Any]) -> None:
        case.call_and_validate(headers=headers)

    try:
        call()
    except Unsatisfiable:  # nothing of this operation can be made invalid (no body, no constrained parameter)
        return None
    except (FailureGroup, Exception) as exc:  # noqa: BLE001 - collected, so one run reports every operation's failure
        return f"{operation.label} ({mode.value}): {exc}"
    return None


def test_every_operation_answers_within_its_documented_statuses_and_schemas(
    api_schema: BaseSchema, existing: Existing
) -> None:
    failures = [
        failure
        for operation in operations(api_schema)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if (failure := fuzz(operation, mode, existing)) is not None
    ]

    assert failures == [], "\n\n".join(failures)


def test_stateful_sequences_answer_within_their_documented_statuses_and_schemas(
    api_schema: BaseSchema, account: AccountKey
) -> None:
    workflow: Any = api_schema.as_state_machine()

    class AuthenticatedWorkflow(workflow):  # type: ignore[misc]  # a class built at run time
        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:  # noqa: ARG002 - the hook's signature
            return {"headers": account.headers}

    AuthenticatedWorkflow.run(
        settings=settings(BOUNDED, max_examples=STATEFUL_SCENARIOS, stateful_step_count=STATEFUL_STEPS)
    )
