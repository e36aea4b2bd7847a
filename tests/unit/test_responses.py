"""docs/api.md: every domain outcome maps to one status, error code and body."""

from __future__ import annotations

import json

import pytest

from devstack.apigw import http_api_event, rest_api_event
from event_router.errors import (
    CredentialsUnavailable,
    InvalidPayload,
    PayloadTooLarge,
    ServiceUnavailable,
    SignatureRejected,
    UnknownRoute,
)
from event_router.verify.apigateway import error_response, receipt_response, webhook_request
from event_router.verify.verifier import Receipt


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (PayloadTooLarge("x"), 413, "payload_too_large"),
        (SignatureRejected("x", cause="signature_mismatch"), 401, "invalid_signature"),
        (InvalidPayload([{"field": "a", "problem": "b"}]), 400, "invalid_payload"),
        (UnknownRoute("x"), 404, "not_found"),
        (ServiceUnavailable("x"), 503, "unavailable"),
        (CredentialsUnavailable("x"), 503, "unavailable"),
    ],
)
def test_each_error_has_one_status_and_code(error: Exception, status: int, code: str) -> None:
    response = error_response(error)
    body = json.loads(response["body"])

    assert (response["statusCode"], body["success"], body["error"]) == (status, False, code)
    assert body["message"]
    assert ("retry-after" in response["headers"]) == (status == 503)


def test_401_does_not_say_why_verification_failed() -> None:
    body = json.loads(error_response(SignatureRejected("x", cause="no_secret_configured"))["body"])

    assert "no_secret_configured" not in json.dumps(body)
    assert "secret" not in body["message"].lower()


def test_400_lists_the_problems() -> None:
    body = json.loads(error_response(InvalidPayload([{"field": "record_id", "problem": "Field required"}]))["body"])

    assert body["details"] == [{"field": "record_id", "problem": "Field required"}]


def test_accepted_and_duplicate_bodies() -> None:
    accepted, duplicate = (
        receipt_response(Receipt("e-1", duplicate=False)),
        receipt_response(Receipt("e-1", duplicate=True)),
    )

    assert (accepted["statusCode"], json.loads(accepted["body"])["status"]) == (202, "queued")
    assert (duplicate["statusCode"], json.loads(duplicate["body"])["status"]) == (200, "duplicate")


def test_a_webhook_reads_the_same_from_the_rest_api_and_an_http_api() -> None:
    headers = {"Content-Type": "application/json", "X-Zoho-Signature": "sha256=abc"}
    body = b'{"record_id": "R1"}'
    path = "/api/v1/events/zoho/student"

    rest = webhook_request(rest_api_event("POST", path, body, headers, source_ip="198.51.100.7"))
    http = webhook_request(http_api_event("POST", path, body, headers, source_ip="198.51.100.7"))
    binary = webhook_request(rest_api_event("POST", path, b"\xff\x00", headers, force_base64=True))

    assert rest == http
    assert (rest.route, rest.source_ip, rest.body) == (f"POST {path}", "198.51.100.7", body)
    assert rest.headers["x-zoho-signature"] == "sha256=abc"  # names lowered, as the verifier expects
    assert binary.body == b"\xff\x00"
