"""What the end-to-end tests share: a database of their own for each stack, and waiting for it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, text

from event_router.operate.migrate import make_engine

FAST_RETRIES = "QueueVisibilityTimeout=1 MaxReceiveCount=3 ProcessorBatchingWindow=0 RetryBaseDelaySeconds=1"


def wait_for(condition: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def statuses(db: Engine) -> dict[str, str]:
    with db.connect() as connection:
        return dict(connection.execute(text("SELECT event_id, status FROM integration_events_log")).all())


def count(db: Engine, table: str) -> int:
    with db.connect() as connection:
        return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.fixture
def e2e_database(fresh_database: Callable[[str], str]) -> Iterator[tuple[str, Engine]]:
    url = fresh_database("e2e")
    engine = make_engine(url)
    yield url, engine
    engine.dispose()
