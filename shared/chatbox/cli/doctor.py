"""`chatbox doctor`'s composition: builds what each check needs from the settings, and runs the checks of
`chatbox.services.doctor` in order, skipping those whose prerequisite failed (no database, no vault key)."""

from __future__ import annotations

from chatbox.adapters.system_resolver import system_resolver
from chatbox.compose import build_queue, build_runtime, discover_platforms, resolve_vault_key
from chatbox.domain.errors import ChatboxError
from chatbox.domain.settings import Settings
from chatbox.ports.probe import ProbeResult
from chatbox.runtime import address_policy
from chatbox.services import doctor as checks
from chatbox.store.database import Database


def doctor_results(settings: Settings) -> list[ProbeResult]:
    """Every check's lines, in order. Never raises for what it finds."""
    results = [ProbeResult("settings", "ok", f"home {settings.home}, public URL {settings.public_url}")]
    database = Database(settings.db_url)
    try:
        for prerequisite in (checks.check_database, checks.check_migrations):
            found = prerequisite(database)
            results += found
            if any(result.status == "fail" for result in found):
                return results
        try:
            results += checks.check_queue(build_queue(settings, database))
        except Exception as exc:  # noqa: BLE001 - any adapter failure is this check's finding, not a crash
            results.append(ProbeResult("queue", "fail", f"{type(exc).__name__}: {exc}", "check CHATBOX_SQS_*"))
        try:
            resolve_vault_key(settings)
            runtime = build_runtime(settings, platforms=discover_platforms())
        except ChatboxError as exc:
            results.append(ProbeResult("vault", "fail", exc.message, "set CHATBOX_VAULT_KEY"))
            with database.session() as db:
                results += checks.check_mailbox_urls(db, address_policy(settings, system_resolver))
            return results
        try:
            with runtime.db.session() as db:
                results += checks.check_credentials(db, runtime.vault)
                results += checks.check_connections(
                    db, runtime.vault, runtime.platforms, public_url=settings.public_url
                )
                results += checks.check_mailbox_urls(db, runtime.address_policy)
        finally:
            runtime.close()
    finally:
        database.dispose()
    return results
