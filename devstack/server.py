"""The HTTP side of the local stack: API Gateway's HTTP API, in-process.

Each request to a route of the template becomes a payload-v2 event (raw body
kept, base64 when it is not text), is handed to the function the template
names, and the function's response becomes the HTTP response.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from devstack.apigw import LOCAL_CALLER, http_api_event, rest_api_event
from devstack.invoke import Handler, LocalContext


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Route(NamedTuple):
    method: str
    path: str
    function_name: str
    handler: Handler
    iam: bool = False  # signed with IAM when deployed; locally every caller is LOCAL_CALLER
    rest: bool = False  # a route of the webhook REST API (payload format 1.0), behind its web ACL


@dataclass(frozen=True)
class Limits:
    """The webhook API's limits, as the template sets them: the web ACL's per-address rate rule
    (``per_address`` requests a minute, ``trusted`` networks not counted), then each route's throttle
    (``rate`` a second, ``burst`` at once). Off unless asked for: the local stack serves bursts whole."""

    rate: float
    burst: int
    per_address: int
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


class _Admission:
    """What API Gateway and AWS WAF decide before a webhook reaches its verifier, in their order."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}  # address → its request times in the last minute
        self._buckets: dict[str, tuple[float, float]] = {}  # route → (tokens, when)

    def refused(self, route: str, address: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if not any(ipaddress.ip_address(address) in n for n in self._limits.trusted):
                seen = self._seen.setdefault(address, deque())
                while seen and seen[0] <= now - 60:
                    seen.popleft()
                seen.append(now)
                if len(seen) > self._limits.per_address:
                    return True  # the web ACL's 429: the route's throttle never sees it
            tokens, then = self._buckets.get(route, (float(self._limits.burst), now))
            tokens = min(float(self._limits.burst), tokens + (now - then) * self._limits.rate)
            if tokens < 1:
                self._buckets[route] = (tokens, now)
                return True  # API Gateway's 429
            self._buckets[route] = (tokens - 1, now)
            return False


class WebhookServer(HTTPServer):
    """An HTTP server whose requests run on a fixed pool of threads (like a pool of warm containers)."""

    daemon_threads = True
    request_queue_size = 128  # a burst of senders must queue, not be reset (socketserver's default is 5)

    def __init__(
        self, address: tuple[str, int], routes: list[Route], threads: int = 16, limits: Limits | None = None
    ) -> None:
        self.routes = {(r.method, r.path): r for r in routes}
        self.admission = _Admission(limits) if limits else None
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http")
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._pool.submit(self._process, request, client_address)

    def _process(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - one broken connection must not stop the server
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class _RequestHandler(BaseHTTPRequestHandler):
    server: WebhookServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        route = self.server.routes.get((self.command, url.path))
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if route is None:
            self._respond(404, {"content-type": "application/json"}, b'{"message":"Not Found"}')
            return
        route_key = f"{route.method} {route.path}"
        admission = self.server.admission
        if route.rest and admission is not None and admission.refused(route_key, self.client_address[0]):
            self._respond(429, {"content-type": "application/json"}, b'{"message":"Too Many Requests"}')
            return
        if route.rest:
            event = rest_api_event(
                self.command,
                url.path,
                body,
                dict(self.headers.items()),
                source_ip=self.client_address[0],
                request_id=str(uuid.uuid4()),
            )
        else:
            event = http_api_event(
                self.command,
                url.path,
                body,
                dict(self.headers.items()),
                route_key=route_key,
                query=url.query,
                source_ip=self.client_address[0],
                request_id=str(uuid.uuid4()),
                iam_caller=LOCAL_CALLER if route.iam else None,
            )
        try:
            response = route.handler(event, LocalContext(route.function_name))
        except Exception:  # noqa: BLE001 - API Gateway answers 500 when the function fails
            traceback.print_exc(file=sys.stderr)
            self._respond(500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}')
            return
        payload = response.get("body") or ""
        raw = base64.b64decode(payload) if response.get("isBase64Encoded") else str(payload).encode()
        cookies = response.get("cookies") or []  # payload format 2.0 answers cookies apart
        self._respond(int(response.get("statusCode", 200)), response.get("headers") or {}, raw, cookies)

    def _respond(self, status: int, headers: dict[str, str], body: bytes, cookies: list[str] | None = None) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        for cookie in cookies or []:
            self.send_header("set-cookie", cookie)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        print(json.dumps({"access": f"{self.command} {self.path}", "status": args[1] if len(args) > 1 else None}))
