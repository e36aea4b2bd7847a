"""A stand-in for Zoho CRM (its accounts server and REST API v8), for the local stack and the tests.
It keeps to what Zoho's developer documentation says, limits included:

- **OAuth**: ``POST /oauth/v2/token`` with ``grant_type=refresh_token``, ``client_id``,
  ``client_secret`` and ``refresh_token`` (in the form body, or in the query as Zoho's examples
  show; ``secrets_in_url`` counts the latter) gives an access token that expires
  (``token_lifetime``, an hour by default) and names the ``api_domain``; at most 10 access
  tokens per refresh token in 10 minutes, then
  ``{"error": "Access Denied"}``; a revoked refresh token answers ``{"error": "invalid_code"}``, a
  wrong client ``{"error": "invalid_client"}``. An expired or unknown access token is a 401
  ``INVALID_TOKEN``.
- **Limits**: more than ``max_concurrent`` calls at once, or past the day's ``credits``, answer 429
  ``TOO_MANY_REQUESTS`` with no ``Retry-After``; every answer carries ``X-API-CREDITS-REMAINING``.
  A call costs one credit, a write one credit per ten records.
- **Records**: get by ``ids`` (``fields`` required; 204 when none exist), search by
  ``criteria=(Field:equals:value)``, update by id, and upsert up to 100 records found by
  ``duplicate_check_fields`` (unique fields only), with per-record results (``SUCCESS``,
  ``DUPLICATE_DATA``, ``INVALID_DATA``, ``MANDATORY_NOT_FOUND``, ``RECORD_LOCKED`` for a record in
  ``locked``, ``AUTHORIZATION_FAILED``), each naming its field in ``details.api_name``: HTTP 200
  when all succeed, 207 when some do, 400 when none do. A profile without the module's permission
  (``denied``) is refused the whole call, 403 ``NO_PERMISSION``. A write without ``trigger: []``
  runs the module's workflow rules (counted in ``workflow_runs``); every write sets
  ``Modified_By`` and ``Modified_Time``.
- **Reading in bulk**: ``POST /coql`` answers a ``select`` of at most 2,000 rows and 50 fields, with
  ``WHERE`` (required) and ``ORDER BY id``, as much of COQL as the router uses; a call costs one
  to three credits by its ``LIMIT``. ``GET /settings/automation/webhook_failures`` lists, 200 a
  page, the workflow webhooks Zoho failed to deliver in the last 30 days (``change_silently``
  makes one).
- **Notifications**: ``/actions/watch`` registers (POST), renews (PATCH) and removes (DELETE)
  channels; a ``token`` over 50 characters is ``INVALID_DATA`` (``maximum_length: 50``); an expiry
  beyond a week, or none, silently becomes an hour; the expiry given is in the answer. On every
  change of a watched module the channel's ``notify_url`` is called, after the change, with the
  ids only.

Tests and the local stack reach its state directly (``org``), as a Zoho administrator would
through Zoho's own pages: change a record as a person, revoke a token, set the limits.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devstack.zoho_limits import API_PREFIX, CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, error
from devstack.zoho_org import Org


class _Handler(BaseHTTPRequestHandler):
    server: ZohoStandIn
    protocol_version = "HTTP/1.1"  # Zoho keeps connections alive; every answer carries its length

    def setup(self) -> None:
        super().setup()
        with self.server.org.lock:
            self.server.connections += 1

    def _respond(self, status: int, document: Any) -> None:
        body = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-API-CREDITS-REMAINING", str(self.server.org.credits_remaining))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if url.path == "/oauth/v2/token" and self.command == "POST":
            form = {k: v[-1] for k, v in parse_qs(raw.decode(errors="replace")).items()}
            self._respond(*self.server.org.token(query, form))
            return
        if url.path.startswith("/standin/"):  # a person's change in Zoho's web pages, for the local stack
            self._respond(*self._person(url.path.removeprefix("/standin/").split("/"), raw))
            return
        if not url.path.startswith(API_PREFIX):
            self._respond(
                404, error("INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")
            )
            return
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            self._respond(400, error("INVALID_DATA", "body is not valid JSON"))
            return
        auth = self.headers.get("Authorization", "")
        self._respond(*self.server.org.api(self.command, url.path, query, body, auth))

    def _person(self, parts: list[str], raw: bytes) -> tuple[int, Any]:
        """``POST /standin/<module>`` creates a record, ``PATCH /standin/<module>/<id>`` changes one,
        as a person would in Zoho's pages: not part of Zoho's API, and Zoho notifies as for any change."""
        org = self.server.org
        try:
            fields = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return 400, error("INVALID_DATA", "body is not valid JSON")
        if not parts or parts[0] not in org.records or not isinstance(fields, dict):
            return 400, error("INVALID_MODULE", "the module name given seems to be invalid")
        if self.command == "POST" and len(parts) == 1:
            return 201, {"id": org.create(parts[0], fields)}
        if self.command == "PATCH" and len(parts) == 2 and parts[1] in org.records[parts[0]]:
            org.change(parts[0], parts[1], fields)
            return 200, {"id": parts[1]}
        return 404, error("INVALID_URL_PATTERN", "no such record")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        return None


class ZohoStandIn(ThreadingHTTPServer):
    """The stand-in on a loopback port: one URL for the accounts server and the API."""

    daemon_threads = True

    def __init__(self, org: Org | None = None, port: int = 0) -> None:
        self.org = org or Org()
        self.connections = 0  # TCP connections accepted: a client that keeps them alive opens few
        super().__init__(("127.0.0.1", port), _Handler)
        self.org.api_url = self.url
        self._thread = threading.Thread(target=self.serve_forever, name="zoho-standin", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def credentials(self) -> dict[str, str]:
        return {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN}

    def start(self) -> ZohoStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
