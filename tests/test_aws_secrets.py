"""Secrets named by ARN in the environment, resolved once per cold start (chatbox.adapters.aws_secrets)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from chatbox.adapters.aws_secrets import SecretError, database_url_from_secret, resolve_secret_settings
from chatbox.domain.settings import Settings

REGION = "eu-west-1"


@pytest.fixture
def secretsmanager(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CHATBOX_AWS_ENDPOINT_URL", raising=False)
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
    env = {"CHATBOX_VAULT_KEY_SECRET_ARN": vault_arn, "CHATBOX_DB_URL_SECRET_ARN": db_arn}

    settings = resolve_secret_settings(Settings(), environ=env)

    assert settings.vault_key == "a2V5"
    assert settings.db_url == "postgresql+psycopg://u:p@h:5432/postgres"


def test_a_plain_environment_value_wins_over_the_arn() -> None:
    env = {"CHATBOX_VAULT_KEY": "given", "CHATBOX_VAULT_KEY_SECRET_ARN": "arn:aws:secretsmanager:x:1:secret:v"}

    def unreachable(arn: str) -> str:
        raise AssertionError(f"read {arn}")

    settings = resolve_secret_settings(Settings(vault_key="given"), environ=env, read_secret=unreachable)

    assert settings.vault_key == "given"


def test_a_missing_secret_is_a_secret_error_naming_it(secretsmanager: object) -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:missing-AbCdEf"

    with pytest.raises(SecretError, match="missing"):
        resolve_secret_settings(Settings(), environ={"CHATBOX_VAULT_KEY_SECRET_ARN": arn})
