"""The local stack runs every function in one process: each invocation's log lines carry its own
function name and correlation id, as each Lambda container's do (``devstack/logs.py``)."""

from __future__ import annotations

import io
import json
import threading
import uuid
from typing import Any

import pytest
from aws_lambda_powertools import Logger

from devstack.invoke import LocalContext
from devstack.logs import keys_per_thread


@pytest.fixture
def logger() -> tuple[Logger, io.StringIO]:
    stream = io.StringIO()
    return Logger(service=f"keys-per-thread-{uuid.uuid4().hex[:8]}", stream=stream), stream


def interleaved(logger: Logger) -> None:
    """Two functions' invocations, each setting its keys, then logging after the other has set its own."""
    both_set = threading.Barrier(2)

    def invocation(name: str) -> None:
        @logger.inject_lambda_context(clear_state=True)
        def handler(event: dict[str, Any], context: Any) -> None:
            logger.set_correlation_id(f"event-of-{name}")
            both_set.wait(timeout=10)
            logger.info("done")

        handler({}, LocalContext(function_name=name))

    threads = [threading.Thread(target=invocation, args=(name,)) for name in ("VerifierA", "ProcessorB")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)


def lines(stream: io.StringIO) -> list[tuple[str, str]]:
    return sorted(
        (line["function_name"], line["correlation_id"]) for line in map(json.loads, stream.getvalue().splitlines())
    )


def test_each_invocation_logs_with_its_own_function_name_and_correlation_id(
    logger: tuple[Logger, io.StringIO],
) -> None:
    log, stream = logger
    keys_per_thread(log)

    interleaved(log)

    assert lines(stream) == [("ProcessorB", "event-of-ProcessorB"), ("VerifierA", "event-of-VerifierA")]


def test_with_one_set_of_keys_per_process_the_lines_bleed(logger: tuple[Logger, io.StringIO]) -> None:
    log, stream = logger  # Powertools as Lambda runs it: what the local stack used to do

    interleaved(log)

    logged = lines(stream)
    assert len(logged) == 2
    assert len(set(logged)) == 1  # both lines name whichever invocation set its keys last
