"""API Gateway HTTP API (payload format 2.0) events, built the way API Gateway builds them."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

_TEXT_TYPES = ("text/", "application/json", "application/x-www-form-urlencoded", "application/xml")


def _is_text(content_type: str | None, body: bytes) -> bool:
    if content_type and not content_type.lower().startswith(_TEXT_TYPES):
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def http_api_event(
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    route_key: str | None = None,
    query: str = "",
    source_ip: str = "127.0.0.1",
    request_id: str = "local-request",
    time_epoch_ms: int = 1_764_072_000_000,
    force_base64: bool = False,
    iam_caller: str | None = None,
) -> dict[str, Any]:
    """The event a Lambda integration receives for one request (on a route with IAM authorisation,
    ``iam_caller`` is the ARN API Gateway verified the signature of).

    Header names are lowercased and repeated headers joined with commas, as
    API Gateway does; the body stays as received, base64-encoded when it is not
    text.
    """
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    as_text = not force_base64 and _is_text(lowered.get("content-type"), body)
    route = route_key or f"{method} {path}"
    return {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": request_id,
            **({"authorizer": {"iam": _iam(iam_caller)}} if iam_caller else {}),
            "routeKey": route,
            "stage": "$default",
            "time": "25/Nov/2026:12:00:00 +0000",
            "timeEpoch": time_epoch_ms,
        },
        "body": body.decode("utf-8") if as_text else base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": not as_text,
    }


LOCAL_CALLER = "arn:aws:iam::123456789012:user/local-developer"  # the local stack's stand-in IAM user


def _iam(arn: str) -> dict[str, Any]:
    """``requestContext.authorizer.iam`` as API Gateway fills it for a caller it authenticated."""
    account = arn.split(":")[4]
    return {"accountId": account, "callerId": "AIDALOCALDEVELOPER", "userArn": arn, "userId": "AIDALOCALDEVELOPER"}
