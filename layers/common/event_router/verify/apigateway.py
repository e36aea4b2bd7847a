"""API Gateway in and out: the one place errors become responses.

The webhook routes are a REST API (payload format 1.0: a web ACL can bound each address there,
docs/decisions.md); the operators' routes an HTTP API (format 2.0). A request reads the same from
either."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from event_router.errors import (
    CredentialsUnavailable,
    InvalidPayload,
    PayloadTooLarge,
    ServiceUnavailable,
    SignatureRejected,
    UnknownRoute,
)
from event_router.verify.verifier import NotificationReceipt, Receipt, WebhookRequest

RETRY_AFTER_SECONDS = 30

# exception → (status, error code, message for the sender)
_ERRORS: dict[type[Exception], tuple[int, str, str]] = {
    PayloadTooLarge: (413, "payload_too_large", "The request body is larger than 256 KiB"),
    SignatureRejected: (401, "invalid_signature", "Webhook signature verification failed"),
    InvalidPayload: (400, "invalid_payload", "The request body is not a valid event"),
    UnknownRoute: (404, "not_found", "No webhook is served at this route"),
    ServiceUnavailable: (503, "unavailable", "The event could not be stored; retry later"),
    CredentialsUnavailable: (503, "unavailable", "Webhook secrets could not be loaded; retry later"),
}


def webhook_request(event: dict[str, Any]) -> WebhookRequest:
    """The verifier's view of an API Gateway event: a REST API's (format 1.0) or an HTTP API's (2.0)."""
    context = event.get("requestContext") or {}
    if "httpMethod" in event:  # format 1.0: the route is the method and the resource's path
        route = f"{event['httpMethod']} {event.get('resource') or event.get('path', '')}"
        source_ip = (context.get("identity") or {}).get("sourceIp")
    else:
        http = context.get("http") or {}
        route = event.get("routeKey") or f"{http.get('method', 'POST')} {event.get('rawPath', '')}"
        source_ip = http.get("sourceIp")
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidPayload([{"field": "body", "problem": "is not valid base64"}]) from None
    else:
        raw = body.encode("utf-8")
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    return WebhookRequest(route=route, headers=headers, body=raw, source_ip=source_ip)


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": json.dumps(body),
    }


def receipt_response(receipt: Receipt | NotificationReceipt) -> dict[str, Any]:
    """202 for a new event, 200 for a duplicate (docs/api.md); for a notification, 202 unless every
    event it named was a duplicate."""
    if isinstance(receipt, NotificationReceipt):
        ids = list(receipt.event_ids)
        status = 200 if receipt.duplicates == len(ids) else 202
        body = {"success": True, "message": "Notification accepted", "event_ids": ids, "duplicates": receipt.duplicates}
        return json_response(status, body)
    event_id = receipt.event_id
    if receipt.duplicate:
        body = {"success": True, "message": "Duplicate event ignored", "event_id": event_id, "status": "duplicate"}
        return json_response(200, body)
    body = {"success": True, "message": "Event accepted for processing", "event_id": event_id, "status": "queued"}
    return json_response(202, body)


def not_found_response() -> dict[str, Any]:
    """404 for a route the function does not serve."""
    return json_response(404, {"success": False, "error": "not_found", "message": "No such route"})


def error_response(error: Exception) -> dict[str, Any]:
    """The response for a domain exception of ``_ERRORS``."""
    status, code, message = _ERRORS[type(error)]
    body: dict[str, Any] = {"success": False, "error": code, "message": message}
    if isinstance(error, InvalidPayload):
        body["details"] = error.details
    headers = {"retry-after": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return json_response(status, body, headers)


HANDLED_ERRORS = tuple(_ERRORS)
