"""API Gateway events, built the way API Gateway builds them: a REST API's (payload format 1.0, the
webhook routes) and an HTTP API's (2.0, the operators' routes)."""

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


def rest_api_event(
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    resource: str | None = None,
    source_ip: str = "127.0.0.1",
    request_id: str = "local-request",
    time_epoch_ms: int = 1_764_072_000_000,
    force_base64: bool = False,
) -> dict[str, Any]:
    """The event a Lambda proxy integration of a REST API receives for one request (format 1.0):
    headers as sent (the last of a repeated header; all of them in ``multiValueHeaders``), the
    stage's name in ``requestContext``, the body as received, base64-encoded when it is not text."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers.items():
        single[name] = value
        multi.setdefault(name, []).append(value)
    content_type = next((v for k, v in single.items() if k.lower() == "content-type"), None)
    as_text = not force_base64 and _is_text(content_type, body)
    return {
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "httpMethod": method,
            "identity": {"sourceIp": source_ip, "userAgent": single.get("user-agent", "")},
            "path": f"/live{path}",
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTimeEpoch": time_epoch_ms,
            "resourcePath": resource or path,
            "stage": "live",
        },
        "body": body.decode("utf-8") if as_text else base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": not as_text,
    }
