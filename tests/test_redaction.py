"""The redaction layer alone: the shapes it recognizes, the registry of secret values, log records, and the
composition roots that install it (the CLI's logging, uvicorn's log config, the Lambda logger)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from chatbox.domain.redaction import (
    MIN_SECRET_LENGTH,
    REDACTED,
    RedactingFilter,
    RedactingFormatter,
    SecretRegistry,
    install_log_redaction,
    redact,
    redact_record,
    redact_url,
    register_secret,
    uninstall_log_redaction,
)
from chatbox.domain.settings import Settings
from chatbox.domain.vault import Vault, generate_key
from chatbox.local.serve import uvicorn_log_config

TELEGRAM_TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
CBK = "cbk_" + "Ab3_-" * 9


# --- shapes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # URL userinfo, and every query and fragment value of an absolute URL
        ("POST https://user:pa55@hooks.example/x", f"POST https://{REDACTED}@hooks.example/x"),
        ("https://tok3n@hooks.example/x", f"https://{REDACTED}@hooks.example/x"),
        (
            'HTTP Request: POST http://127.0.0.1:9/hook?token=abc&v=1#k=2 "HTTP/1.1 200 OK"',
            f'HTTP Request: POST http://127.0.0.1:9/hook?token={REDACTED}&v={REDACTED}#k={REDACTED} "HTTP/1.1 200 OK"',
        ),
        ("postgresql+psycopg://app:s3cret@db:5432/chatbox", f"postgresql+psycopg://{REDACTED}@db:5432/chatbox"),
        ("https://hooks.example/x?abc123", f"https://hooks.example/x?{REDACTED}"),
        # secret-named parameters in paths, forms and messages; JSON and repr fields; header pairs
        ("GET /mcp/mbx_1?token=abc&limit=10", f"GET /mcp/mbx_1?token={REDACTED}&limit=10"),
        (
            "api_key=zzz client_secret=y password=hunter2",
            f"api_key={REDACTED} client_secret={REDACTED} password={REDACTED}",
        ),
        ('{"bot_token": "7012", "name": "ok"}', f'{{"bot_token": "{REDACTED}", "name": "ok"}}'),
        ("{'Authorization': 'Bearer abc'}", f"{{'Authorization': \"{REDACTED}\"}}"),
        ("[(b'x-telegram-bot-api-secret-token', b'abc')]", f"[(b'x-telegram-bot-api-secret-token', b\"{REDACTED}\")]"),
        ("X-Telegram-Bot-Api-Secret-Token: abc def", f"X-Telegram-Bot-Api-Secret-Token: {REDACTED} def"),
        ("authorization: Basic dXNlcjpwYXNz", f"authorization: {REDACTED}"),
        # Telegram bot tokens, in a Bot API path and bare
        (
            f"POST https://api.telegram.org/bot{TELEGRAM_TOKEN}/getMe",
            f"POST https://api.telegram.org/bot{REDACTED}/getMe",
        ),
        (f"token {TELEGRAM_TOKEN} refused", f"token {REDACTED} refused"),
        # Authorization values in free text
        ("sent Bearer abc.def-ghi", f"sent Bearer {REDACTED}"),
        ("with Basic dXNlcjpwYXNz", f"with Basic {REDACTED}"),
        # chatbox's tokens (the prefix stays), Slack, Discord, AWS, JWT
        (f"key {CBK}", f"key cbk_{REDACTED}"),
        ("mcp_" + "x" * 43 + " inb_" + "y" * 43, f"mcp_{REDACTED} inb_{REDACTED}"),
        ("whsec_c2VjcmV0LXNpZ25pbmcta2V5", f"whsec_{REDACTED}"),
        ("xoxb-1111-2222-abcdef xapp-1-A0-123-abc", f"xoxb-{REDACTED} xapp-{REDACTED}"),
        ("https://hooks.slack.com/services/T0/B0/XXXX", f"https://hooks.slack.com/services/{REDACTED}"),
        ("https://discord.com/api/webhooks/123/abc-DEF_g", f"https://discord.com/api/webhooks/123/{REDACTED}"),
        ("MTA5ODc2NTQzMjEwOTg3NjU0MzIx.GaBcDe.abcdefghijklmnopqrstuvwxyz0123", REDACTED),
        ("AKIAIOSFODNN7EXAMPLE", REDACTED),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", REDACTED),
    ],
)
def test_each_secret_shape_is_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "delivery dlv_01JD3ZZZZZZZZZZZZZZZZZZZZZ of mailbox mbx_01JD3ZZZZZZZZZZZZZZZZZZZZZ failed: HTTP 500",
        '127.0.0.1:51234 - "POST /v1/connections/conn_01JD3ZZZZZZZZZZZZZZZZZZZZZ/messages HTTP/1.1" 202',
        "status_code=200 key_id=key_01JD3 error_code=400 limit=10",
        "config.outbound_credential_id names an mcp_proxy_auth credential",
        "secrets.signing_secret (Basic Information → App Credentials)",
        "Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)",
        "HTTP Request: POST https://api.telegram.org/bot***/sendMessage",
        "chat telegram:-1002233445566 message 5512345678:41",
    ],
)
def test_what_is_not_a_secret_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_redact_url_keeps_the_host_and_path_for_an_operator() -> None:
    assert redact_url("https://u:p@hooks.example:8443/in/agent?token=t&x=1") == (
        f"https://{REDACTED}@hooks.example:8443/in/agent?token={REDACTED}&x={REDACTED}"
    )
    assert redact_url("https://hooks.example/in") == "https://hooks.example/in"
    assert redact_url("-") == "-"


# --- the registry of secret values -------------------------------------------------------------------


def test_a_registered_value_is_redacted_whatever_its_shape() -> None:
    registry = SecretRegistry()
    registry.add("8f742231b10e8888abcd99yyyzzz85a5")

    assert registry.redact("sig=8f742231b10e8888abcd99yyyzzz85a5!") == f"sig={REDACTED}!"
    assert registry.redact("x8f742231b10e8888abcd99yyyzzz85a5y") == f"x{REDACTED}y"
    assert registry.redact("nothing here") == "nothing here"


def test_short_blank_and_id_values_are_not_registered() -> None:
    registry = SecretRegistry()
    for value in ["a" * (MIN_SECRET_LENGTH - 1), " " * 20, "", None, "mbx_01JD3ZZZZZZZZZZZZZZZZZZZZZ"]:
        registry.add(value)

    assert len(registry) == 0


def test_overlapping_values_are_redacted_whole_and_the_longest_wins() -> None:
    registry = SecretRegistry()
    registry.add("abcdefgh")
    registry.add("abcdefghijkl")
    registry.add("ghijklmnop")

    assert registry.redact("<abcdefghijklmnop>") == f"<{REDACTED}>"
    assert registry.redact("abcdefgh abcdefghijkl") == f"{REDACTED} {REDACTED}"


def test_the_registry_is_bounded_and_forgets_the_least_recently_used() -> None:
    registry = SecretRegistry(capacity=2)
    registry.add("first-secret")
    registry.add("second-secret")
    registry.add("first-secret")  # used again: now the most recent
    registry.add("third-secret")

    assert len(registry) == 2
    assert registry.redact("first-secret second-secret third-secret") == f"{REDACTED} second-secret {REDACTED}"


def test_the_registry_takes_values_while_other_threads_redact() -> None:
    registry = SecretRegistry(capacity=500)
    errors: list[BaseException] = []

    def redact_lines() -> None:
        try:
            for _ in range(2000):
                registry.redact("value-0000123 and some text around it")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    readers = [threading.Thread(target=redact_lines) for _ in range(2)]
    for reader in readers:
        reader.start()
    for index in range(1000):
        registry.add(f"value-{index:07d}")
    for reader in readers:
        reader.join(timeout=30)

    assert errors == []
    assert len(registry) == 500


def test_the_vault_registers_its_keys_and_every_value_it_seals_or_opens() -> None:
    key, old_key = generate_key(), generate_key()
    vault = Vault(key, [old_key])
    sealed = vault.seal("sealed-value-0001", credential_id="cred_1", account_id="acct_1")
    other = Vault(key)
    other.open(
        Vault(key).seal("opened-value-0002", credential_id="c", account_id="a"), credential_id="c", account_id="a"
    )

    assert sealed.ciphertext
    for value in (key, old_key, "sealed-value-0001", "opened-value-0002"):
        assert redact(f"<{value}>") == f"<{REDACTED}>"


def test_settings_name_their_secret_values() -> None:
    settings = Settings(
        db_url="postgresql://app:p%40ss-w0rd@db/chatbox",
        vault_key="k" * 44,
        vault_old_keys="o" * 44 + ", " + "p" * 44,
        bootstrap_api_key="b" * 32,
    )

    assert settings.secret_values() == ["k" * 44, "o" * 44, "p" * 44, "b" * 32, "p%40ss-w0rd", "p@ss-w0rd"]
    assert Settings(db_url="sqlite:///x.db").secret_values() == []


# --- log records ------------------------------------------------------------------------------------


def make_record(msg: object, args: object = (), **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("test", logging.INFO, __file__, 1, msg, None, None)
    record.args = args  # type: ignore[assignment]  # a dict or tuple, as logging allows
    record.__dict__.update(extra)
    return record


def test_args_keep_their_shape_for_formatters_that_read_them() -> None:
    # uvicorn's access formatter unpacks (client, method, path, version, status) and formats status with %d.
    record = make_record('%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5", "GET", "/v1/x?token=abc", "1.1", 401))

    redact_record(record)

    assert record.args == ("127.0.0.1:5", "GET", f"/v1/x?token={REDACTED}", "1.1", 401)
    assert record.getMessage() == f'127.0.0.1:5 - "GET /v1/x?token={REDACTED} HTTP/1.1" 401'


def test_an_object_argument_is_replaced_by_its_redacted_rendering() -> None:
    class Url:
        def __str__(self) -> str:
            return "https://u:pw@h/x"

        def __repr__(self) -> str:
            return "URL('https://u:pw@h/x')"

    record = make_record("HTTP Request: %s %r", (Url(), Url()))

    redact_record(record)

    assert record.getMessage() == f"HTTP Request: https://{REDACTED}@h/x URL('https://{REDACTED}@h/x')"
    assert "pw" not in repr(record.args)


def test_a_secret_made_by_joining_message_and_args_is_caught() -> None:
    record = make_record("https://%s@hooks.example/x", ("user:pw",))

    redact_record(record)

    assert record.getMessage() == f"https://{REDACTED}@hooks.example/x"
    assert record.args == ()


def test_mapping_args_exception_stack_and_extra_fields_are_redacted() -> None:
    try:
        raise RuntimeError(f"refused {TELEGRAM_TOKEN}")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("test", logging.ERROR, __file__, 1, "%(url)s", None, exc_info)
    record.args = {"url": "https://h/x?sig=abc"}
    record.stack_info = f"Stack (most recent call last):\n  token {TELEGRAM_TOKEN}"
    record.__dict__.update(webhook="https://u:pw@h/", headers={"authorization": f"Bearer {CBK}"})

    redact_record(record)
    line = logging.Formatter("%(message)s %(webhook)s %(headers)s").format(record)

    assert record.getMessage() == f"https://h/x?sig={REDACTED}"
    assert TELEGRAM_TOKEN not in (record.exc_text or "") and REDACTED in (record.exc_text or "")
    assert TELEGRAM_TOKEN not in (record.stack_info or "")
    assert "pw" not in line and CBK not in line
    assert "RuntimeError" in line  # the traceback is still there


def test_a_structured_message_stays_structured() -> None:
    record = make_record({"event": "sent", "url": "https://h/x?token=abc", "count": 2})

    redact_record(record)

    assert record.msg == {"event": "sent", "url": f"https://h/x?token={REDACTED}", "count": 2}


def test_the_filter_never_drops_a_record_and_the_formatter_redacts_its_output() -> None:
    record = make_record(f"key {CBK}")
    formatter = RedactingFormatter("%(levelname)s %(message)s")

    assert RedactingFilter().filter(make_record("plain")) is True
    assert formatter.format(record) == f"INFO key cbk_{REDACTED}"


# --- installed in a process -------------------------------------------------------------------------


@pytest.fixture
def installed() -> Iterator[list[logging.LogRecord]]:
    """Redaction installed, and a handler added afterwards (as uvicorn, pytest or the Lambda runtime would)."""
    install_log_redaction()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    logger = logging.getLogger("chatbox.test.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        uninstall_log_redaction()


def test_every_record_is_redacted_as_it_is_made_whichever_handler_gets_it(installed: list[logging.LogRecord]) -> None:
    register_secret("registered-secret-0003")
    logger = logging.getLogger("chatbox.test.redaction")

    logger.debug("HTTP Request: %s %s", "POST", "https://u:pw@h/x?token=abc")
    logger.info("opened registered-secret-0003")
    try:
        raise ValueError(CBK)
    except ValueError:
        logger.exception("failed")

    messages = [record.getMessage() for record in installed]
    assert messages == [f"HTTP Request: POST https://{REDACTED}@h/x?token={REDACTED}", f"opened {REDACTED}", "failed"]
    assert CBK not in (installed[2].exc_text or "")


def test_installing_twice_wraps_the_record_factory_once_and_uninstalling_restores_it() -> None:
    original = logging.getLogRecordFactory()
    install_log_redaction()
    wrapped = logging.getLogRecordFactory()
    install_log_redaction()

    assert logging.getLogRecordFactory() is wrapped is not original
    uninstall_log_redaction()
    assert logging.getLogRecordFactory() is original


def test_the_cli_logs_redacted_lines_on_stderr() -> None:
    program = (
        "import logging\n"
        "from chatbox.cli.main import _configure_logging\n"
        "from chatbox.domain.settings import Settings\n"
        "_configure_logging(Settings(log_level='DEBUG', bootstrap_api_key='chosen-bootstrap-key-0123456789abcdef'))\n"
        "logging.getLogger('httpx').info('HTTP Request: %s %s', 'POST', 'https://u:pw@h/x?token=abc')\n"
        "logging.getLogger('chatbox').debug('key chosen-bootstrap-key-0123456789abcdef')\n"
        "try:\n"
        f"    raise RuntimeError('{TELEGRAM_TOKEN}')\n"
        "except RuntimeError:\n"
        "    logging.getLogger('chatbox').exception('crashed')\n"
    )

    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)

    assert f"HTTP Request: POST https://{REDACTED}@h/x?token={REDACTED}" in done.stderr
    assert f"DEBUG chatbox: key {REDACTED}" in done.stderr
    assert "RuntimeError" in done.stderr
    for secret in ("pw@", "token=abc", "chosen-bootstrap-key", TELEGRAM_TOKEN):
        assert secret not in done.stderr


def test_uvicorns_log_config_puts_the_redacting_filter_on_every_handler() -> None:
    config = uvicorn_log_config()

    assert config["filters"]["redact"]["()"] is RedactingFilter
    assert config["handlers"]
    assert all("redact" in handler["filters"] for handler in config["handlers"].values())


def test_the_lambda_logger_prints_redacted_json(capsys: pytest.CaptureFixture[str]) -> None:
    from chatbox.adapters.aws_lambda import lambda_logger

    logger = lambda_logger("chatbox-redaction-test", level="DEBUG")
    try:
        try:
            raise RuntimeError(f"Telegram refused {TELEGRAM_TOKEN}")
        except RuntimeError:
            logger.exception("delivery to %s failed", "https://u:pw@hooks.example/x?token=abc")
        logger.info("sweep finished", extra={"webhook": "https://u:pw@hooks.example/"})
        logging.getLogger("chatbox.services.test").warning("key %s", CBK)
    finally:
        uninstall_log_redaction()

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    printed = json.dumps(lines)
    assert [line["message"] for line in lines] == [
        f"delivery to https://{REDACTED}@hooks.example/x?token={REDACTED} failed",
        "sweep finished",
        f"key cbk_{REDACTED}",
    ]
    assert lines[0]["exception_name"] == "RuntimeError" and REDACTED in lines[0]["exception"]
    assert lines[1]["webhook"] == f"https://{REDACTED}@hooks.example/"
    for secret in (TELEGRAM_TOKEN, "pw@", "token=abc", CBK):
        assert secret not in printed
