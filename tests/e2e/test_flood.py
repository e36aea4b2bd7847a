"""A flood from one address does not stop the signed webhooks of another (docs/decisions.md, "A bound
per address"): the local stack applies the webhook API's web ACL and throttle as the template sets
them (``API_LIMITS=on``), with small limits so that a test can reach them.

Deployed, AWS WAF's rate-based rule counts each address's requests before API Gateway's route
throttle sees them; what the stand-in shows is that order, and that it is what protects the others.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from devstack.process import RunningStack
from devstack.samples import zoho_webhook

ROUTE_LIMITS = "ApiThrottlingRateLimit=20 ApiThrottlingBurstLimit=20"
FLOODER = "127.0.0.2"  # another loopback address: the flood's source
# What one address may send a minute: more than the genuine sender's 20, and the flood has spent it
# (and the routes' bucket has refilled) before the genuine webhooks start, however slow the machine.
PER_ADDRESS = 30


def flood(stack: RunningStack, stop: threading.Event, statuses: Counter[int]) -> None:
    """Forged requests to Zoho's student route from FLOODER, as fast as one connection goes."""
    forged = zoho_webhook("students", "F1", signing="bad-signature")
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10, source_address=(FLOODER, 0))
    while not stop.is_set():
        connection.request("POST", "/api/v1/events/zoho/student", forged.body, forged.headers())
        response = connection.getresponse()
        response.read()
        statuses[response.status] += 1


def genuine_while_flooded(stack: RunningStack, count: int = 20) -> tuple[Counter[int], Counter[int]]:
    """The answers to ``count`` signed webhooks sent at 10 a second from 127.0.0.1 while FLOODER floods:
    once the flood has sent more than a minute's allowance, and the routes' bucket has had a second
    and a half to refill (20 a second, 20 at most)."""
    flooded: Counter[int] = Counter()
    stop = threading.Event()
    threads = [threading.Thread(target=flood, args=(stack, stop, flooded)) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while sum(flooded.values()) <= 2 * PER_ADDRESS and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)
        answered: Counter[int] = Counter()
        for n in range(count):
            status, _ = stack.send(zoho_webhook("students", f"G{n}", name=f"genuine-{n}", Name=f"Student {n}"))
            answered[status] += 1
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return answered, flooded


@pytest.fixture
def start_stack(e2e_database: tuple[str, Engine], tmp_path: Path) -> Iterator[Callable[[int], RunningStack]]:
    started: list[RunningStack] = []

    def start(per_address: int) -> RunningStack:
        overrides = f"{ROUTE_LIMITS} WebhookRequestsPerAddressPerMinute={per_address}"
        directory, limits = tmp_path / f"stack-{per_address}", {"API_LIMITS": "on"}
        stack = RunningStack(directory, e2e_database[0], overrides, environment=limits)
        stack.start()
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()


def test_a_flood_from_one_address_does_not_stop_signed_webhooks_from_another(
    start_stack: Callable[[int], RunningStack],
) -> None:
    stack = start_stack(PER_ADDRESS)

    answered, flooded = genuine_while_flooded(stack)

    assert answered == Counter({202: 20})  # every genuine webhook accepted
    # Of the flood, at most a minute's allowance reached the routes; the rest was turned away at the door
    assert flooded[401] <= PER_ADDRESS
    assert flooded[429] >= sum(flooded.values()) - PER_ADDRESS > 0


def test_without_the_per_address_limit_the_same_flood_starves_them(start_stack: Callable[[int], RunningStack]) -> None:
    stack = start_stack(1_000_000)  # in effect, no web ACL: only the routes' shared throttle

    answered, _ = genuine_while_flooded(stack)

    assert answered[429] > 0  # what the web ACL is there to prevent
