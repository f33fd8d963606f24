"""Lambda entry for deliveries: SQS FIFO records -> the core's record handler, via Powertools' batch processor.

On a schedule (an EventBridge "Scheduled Event") it runs the sweeper instead.
A record that must be retried raises; the processor reports it (and, to keep each chat in order,
the later records of its group) in `batchItemFailures`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chatbox.adapters.aws_lambda import lambda_logger, lambda_settings
from chatbox.adapters.sqs_queue import record_from_lambda
from chatbox.compose import build_runtime
from chatbox.services.delivery import deliver_record, sweep_unenqueued

logger = lambda_logger("chatbox-delivery")
runtime = build_runtime(lambda_settings())


def record_handler(record: SQSRecord) -> None:
    # Each record's log lines carry its SQS message id as the correlation id.
    logger.set_correlation_id(record.message_id)
    deliver_record(record_from_lambda(record.raw_event), runtime.deliverer, runtime.queue)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("detail-type") == "Scheduled Event":
        # The same function, on a schedule, runs the sweeper: deliveries whose hand-off to SQS was lost.
        logger.set_correlation_id(event.get("id"))
        with runtime.db.session() as db:
            swept = sweep_unenqueued(db, runtime.queue, grace_seconds=runtime.settings.sweep_grace_seconds)
        logger.info("sweep finished", extra={"swept": swept})
        return {"swept": swept}
    processor = SqsFifoPartialProcessor(skip_group_on_error=True)
    # A batch whose every record stays is still a normal answer, not an invocation error.
    processor.raise_on_entire_batch_failure = False
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )
