"""Secrets named by ARN in the settings, resolved once per cold start (chatbox.adapters.aws_secrets)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from chatbox.adapters.aws_secrets import SecretError, database_url_from_secret, resolve_secret_settings
from chatbox.domain.settings import Settings
from tests.support.sqs import moto_server

REGION = "eu-west-1"
AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": REGION}


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CHATBOX_AWS_ENDPOINT_URL", raising=False)


@pytest.fixture
def secretsmanager(aws_env: None) -> Iterator[object]:
    with mock_aws():
        yield boto3.client("secretsmanager", region_name=REGION)


def test_rds_managed_secret_json_becomes_a_psycopg_url_with_quoted_credentials() -> None:
    secret = json.dumps(
        {
            "username": "chatbox",
            "password": "p@ss/w:rd",
            "host": "db.cluster-x.eu-west-1.rds.amazonaws.com",
            "port": 5432,
            "dbname": "chatbox",
            "engine": "postgres",
        }
    )

    assert database_url_from_secret(secret) == (
        "postgresql+psycopg://chatbox:p%40ss%2Fw%3Ard@db.cluster-x.eu-west-1.rds.amazonaws.com:5432/chatbox"
    )


def test_plain_url_secret_is_used_as_is() -> None:
    assert database_url_from_secret(" postgresql://u:p@h/db\n") == "postgresql://u:p@h/db"


def test_json_secret_without_credentials_is_a_secret_error() -> None:
    with pytest.raises(SecretError):
        database_url_from_secret('{"host": "h"}')


def test_arns_are_read_from_secrets_manager(secretsmanager: object) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    vault_arn = client.create_secret(Name="vault", SecretString="a2V5\n")["ARN"]
    db_arn = client.create_secret(Name="db", SecretString=json.dumps({"username": "u", "password": "p", "host": "h"}))[
        "ARN"
    ]

    settings = resolve_secret_settings(Settings(vault_key_secret_arn=vault_arn, db_url_secret_arn=db_arn))

    assert settings.vault_key == "a2V5"
    assert settings.db_url == "postgresql+psycopg://u:p@h:5432/postgres"


def test_arns_come_from_the_environment_through_settings(
    secretsmanager: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    arn = client.create_secret(Name="bootstrap", SecretString="cbk_from-the-secret")["ARN"]
    monkeypatch.setenv("CHATBOX_BOOTSTRAP_API_KEY_SECRET_ARN", arn)
    monkeypatch.delenv("CHATBOX_BOOTSTRAP_API_KEY", raising=False)

    settings = resolve_secret_settings(Settings())

    assert settings.bootstrap_api_key == "cbk_from-the-secret"


def test_a_plain_value_wins_over_the_arn(secretsmanager: object) -> None:
    # No such secret exists: reading it would raise, so a pass shows it was never read.
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:vault-AbCdEf"

    settings = resolve_secret_settings(Settings(vault_key="given", vault_key_secret_arn=arn))

    assert settings.vault_key == "given"


def test_a_database_arn_stands_in_for_the_sqlite_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHATBOX_DB_URL", "CHATBOX_DB_URL_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf"

    assert Settings(db_url_secret_arn=arn).db_url == ""
    assert Settings().db_url.startswith("sqlite:///")


def test_a_missing_secret_is_a_secret_error_naming_it(secretsmanager: object) -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:missing-AbCdEf"

    with pytest.raises(SecretError, match="missing"):
        resolve_secret_settings(Settings(vault_key_secret_arn=arn))


def test_a_binary_secret_is_a_secret_error(secretsmanager: object) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    arn = client.create_secret(Name="binary", SecretBinary=b"\x00\x01")["ARN"]

    with pytest.raises(SecretError, match="no SecretString"):
        resolve_secret_settings(Settings(vault_key_secret_arn=arn))


def test_secrets_are_read_from_the_configured_aws_endpoint(aws_env: None) -> None:
    with moto_server() as endpoint:
        client = boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint)
        arn = client.create_secret(Name="vault", SecretString="from-the-endpoint")["ARN"]

        settings = resolve_secret_settings(Settings(vault_key_secret_arn=arn, aws_endpoint_url=endpoint))

    assert settings.vault_key == "from-the-endpoint"
