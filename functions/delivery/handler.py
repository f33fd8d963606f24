"""Lambda entry for deliveries: an SQS FIFO batch -> the core's `deliver_batch` -> `batchItemFailures`.

On a schedule (an EventBridge "Scheduled Event") it runs the sweeper instead, and sends due service events.
The core owns the batch semantics, the same on the local queue: the records it keeps (a failed
record and, to keep each chat in order, the later records of its group) are reported failed, each
already made visible again after the core's retry delay; Lambda deletes the records not reported.
"""

from __future__ import annotations

from typing import Any

from chatbox.adapters.cold_start import composing

with composing():
    from chatbox.adapters.aws_lambda import flushes_metrics, lambda_logger, lambda_settings
    from chatbox.adapters.sqs_queue import record_from_lambda
    from chatbox.compose import build_runtime
    from chatbox.ports.queue import QueueRecord
    from chatbox.services.delivery_batch import deliver_batch
    from chatbox.services.delivery_requeue import sweep_unenqueued

    logger = lambda_logger("chatbox-delivery")
    # Within the function's 180 s timeout, with room for the last event POST's own timeout.
    EVENT_BUDGET_SECONDS = 120.0
    runtime = build_runtime(lambda_settings())


def _correlate(record: QueueRecord) -> None:
    # Each record's log lines carry its SQS message id as the correlation id.
    logger.set_correlation_id(record.message_id)


@flushes_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:  # noqa: ARG001 - Lambda's signature
    if event.get("detail-type") == "Scheduled Event":
        # The same function, on a schedule, runs the sweeper: deliveries whose hand-off to SQS was lost.
        logger.set_correlation_id(event.get("id"))
        with runtime.db.session() as db:
            swept = sweep_unenqueued(db, runtime.queue, grace_seconds=runtime.settings.sweep_grace_seconds)
        # Service events go out here too, off the SQS-driven path, so no subscriber delays a message delivery.
        events = runtime.event_dispatcher.run_once(budget_seconds=EVENT_BUDGET_SECONDS)
        logger.info("sweep finished", extra={"swept": swept, "events_attempted": events})
        return {"swept": swept, "events_attempted": events}
    records = [record_from_lambda(record) for record in event.get("Records", [])]
    kept = deliver_batch(records, runtime.deliverer, runtime.queue, on_record=_correlate)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in kept]}
