"""What every benchmark needs: a Postgres database of its own, moto's SQS, loaded functions."""

from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pg8000.core
from moto.server import ThreadedMotoServer

from devstack.invoke import LocalContext, load_function
from devstack.postgres import create_database, drop_database, start_embedded
from devstack.samples import dev_environment
from devstack.server import free_port
from event_router.contract import MODULES
from event_router.observability import logger
from event_router.operate.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
AWS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "eu-west-2",
    "AWS_REGION": "eu-west-2",
}


@dataclass
class Harness:
    database_url: str
    admin_url: str
    sqs_endpoint: str
    sqs: Any
    queue_urls: dict[str, str]
    dlq_url: str

    def environment(self, **overrides: str) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "AWS_ENDPOINT_URL_SQS": self.sqs_endpoint,
            "DEAD_LETTER_QUEUE_URL": self.dlq_url,
            "POWERTOOLS_SERVICE_NAME": "event-router",
            **{f"{m.upper()}_QUEUE_URL": url for m, url in self.queue_urls.items()},
            **dev_environment(),
            **overrides,
        }

    def function(self, code_dir: str, name: str, **overrides: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        handler = load_function(ROOT / code_dir, "app.handler", self.environment(**overrides), name)
        # Each invocation its own context, so its own clock: one shared context counted the time
        # left from the function's loading, and after 30 s of a bench every batch was out of time.
        return lambda event: handler(event, LocalContext(name))

    def drain(self, module: str) -> None:
        """Empty a module queue, so every measurement sees the same (empty) queue."""
        url = self.queue_urls[module]
        while messages := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            self.sqs.delete_message_batch(QueueUrl=url, Entries=entries)

    def drop_database(self, url: str) -> None:
        drop_database(self.admin_url, url.rsplit("/", 1)[1].split("?")[0])

    def fresh_database(self) -> str:
        name = f"event_router_bench_{uuid.uuid4().hex[:8]}"
        url = create_database(self.admin_url, name)
        upgrade(url)
        return url


@contextmanager
def harness() -> Iterator[Harness]:
    """Postgres (``BENCH_DATABASE_URL``'s server, or embedded) and moto, torn down afterwards."""
    os.environ.update(AWS)
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]
    admin_url = os.environ.get("BENCH_DATABASE_URL")
    server, data_dir = None, None
    if not admin_url:
        data_dir = Path(tempfile.mkdtemp(prefix="event-router-bench-"))
        admin_url, server = start_embedded(data_dir / "data")
    name = f"event_router_bench_{uuid.uuid4().hex[:8]}"
    database_url = create_database(admin_url, name)
    upgrade(database_url)
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    sqs = boto3.client("sqs", endpoint_url=endpoint)
    dlq = sqs.create_queue(QueueName="bench-dlq")["QueueUrl"]
    queues: dict[str, str] = {m: sqs.create_queue(QueueName=f"bench-{m}")["QueueUrl"] for m in MODULES}
    try:
        yield Harness(database_url, admin_url, endpoint, sqs, queues, dlq)
    finally:
        moto.stop()
        drop_database(admin_url, name)
        if server is not None:
            server.cleanup()
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def quiet() -> Iterator[None]:
    """Logs and EMF lines still get formatted and written, to a sink, as Lambda writes them to a pipe:
    nowhere, or appended to the file ``BENCH_LOG`` names (to find why a bench's function failed)."""
    sink = open(os.environ.get("BENCH_LOG") or os.devnull, "a")  # noqa: SIM115 - closed below
    previous = logger.registered_handler.setStream(sink)  # type: ignore[attr-defined]
    try:
        with redirect_stdout(sink):
            yield
    finally:
        logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]
        sink.close()


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def json_body(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


__all__ = ["Harness", "harness", "io", "median", "percentile", "quiet", "say"]


class RoundTrips:
    """Counts pg8000's flushes: each one is a message sent that waits for Postgres' answer."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._original = pg8000.core._flush

    def __enter__(self) -> RoundTrips:
        def counting(sock: Any) -> None:
            with self._lock:
                self.count += 1
            self._original(sock)

        pg8000.core._flush = counting
        return self

    def __exit__(self, *exc: object) -> None:
        pg8000.core._flush = self._original

    def measure(self, action: Callable[[], Any]) -> int:
        before = self.count
        action()
        return self.count - before


Row = tuple[str, str, str, str]  # measure, value, target, verdict


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"
