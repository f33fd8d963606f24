"""What a Lambda function's module does once per cold start: compose without the cyclic collector.

A cold start creates hundreds of thousands of long-lived objects (modules, classes, pydantic and SQLAlchemy
schemas) and next to no garbage: the collector's passes over them while importing, and the full collections they
set off during the first requests, were about a tenth of the api function's cold start (bench/README.md). This
module imports only `gc` and `contextlib`, so a handler can enter `composing()` before importing anything else.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def composing() -> Iterator[None]:
    """Collection off while the block composes the function; what it built is then frozen (never scanned again)
    and the collector's previous state restored."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
