"""docs/api.md: which requests authenticate, and why the others do not."""

from __future__ import annotations

import pytest

from event_router.errors import SignatureRejected
from event_router.verify.signatures import WebhookCredentials, authenticate, sign

BODY = b'{"event_id": "e-1", "event_type": "updated"}'
SECRET = "unit-test-secret-NOT-FOR-PRODUCTION"
OTHER = "unit-test-other-secret-NOT-FOR-PRODUCTION"
CREDENTIALS = WebhookCredentials.of([SECRET])


def cause_of(source: str, headers: dict[str, str], credentials: WebhookCredentials = CREDENTIALS, **kw: str) -> str:
    with pytest.raises(SignatureRejected) as rejected:
        authenticate(source, headers, BODY, credentials, **kw)  # type: ignore[arg-type]
    return rejected.value.cause


def test_sign_is_hmac_sha256_hex_of_the_raw_body() -> None:
    # Known answer computed independently: printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET"
    assert sign("key", b"The quick brown fox jumps over the lazy dog") == (
        "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )


@pytest.mark.parametrize(
    ("source", "header", "value"),
    [
        ("zoho", "x-zoho-signature", "sha256={digest}"),
        ("zoho", "x-zoho-signature", "{digest}"),
        ("zoho", "x-zoho-signature", "SHA256={DIGEST}"),
        ("zoho", "x-zoho-signature", "  sha256={digest}  "),
        ("moodle", "x-moodle-signature", "{digest}"),
        ("moodle", "x-moodle-signature", "{DIGEST}"),
        ("moodle", "x-moodle-signature", "sha256={digest}"),
    ],
)
def test_signature_formats_of_each_source_are_accepted(source: str, header: str, value: str) -> None:
    digest = sign(SECRET, BODY)
    headers = {header: value.format(digest=digest, DIGEST=digest.upper())}

    assert authenticate(source, headers, BODY, CREDENTIALS) == "signature"  # type: ignore[arg-type]


def test_signature_is_checked_against_the_exact_bytes() -> None:
    digest = sign(SECRET, BODY)

    for altered in (BODY + b" ", BODY.replace(b": ", b":"), b""):
        with pytest.raises(SignatureRejected) as rejected:
            authenticate("zoho", {"x-zoho-signature": digest}, altered, CREDENTIALS)
        assert rejected.value.cause == "signature_mismatch"


def test_each_source_reads_only_its_own_header() -> None:
    digest = sign(SECRET, BODY)

    assert cause_of("moodle", {"x-zoho-signature": digest}) == "missing_signature"
    assert cause_of("zoho", {"x-moodle-signature": digest}) == "missing_signature"


@pytest.mark.parametrize(
    ("value", "cause"),
    [
        ("", "malformed_signature"),
        ("sha256=", "malformed_signature"),
        ("sha1=" + "a" * 40, "malformed_signature"),
        ("z" * 64, "malformed_signature"),
        ("a" * 63, "malformed_signature"),
        ("a" * 65, "malformed_signature"),
        ("a" * 64, "signature_mismatch"),
    ],
)
def test_malformed_or_wrong_signatures_are_rejected_with_their_cause(value: str, cause: str) -> None:
    assert cause_of("zoho", {"x-zoho-signature": value}) == cause


def test_signature_made_with_another_secret_is_rejected() -> None:
    assert cause_of("zoho", {"x-zoho-signature": sign(OTHER, BODY)}) == "signature_mismatch"


def test_every_active_secret_is_accepted_during_a_rotation() -> None:
    rotating = WebhookCredentials.of([OTHER, SECRET])

    for secret in (SECRET, OTHER):
        assert authenticate("zoho", {"x-zoho-signature": sign(secret, BODY)}, BODY, rotating) == "signature"


def test_no_configured_secret_rejects_everything() -> None:
    digest = sign(SECRET, BODY)

    assert cause_of("zoho", {"x-zoho-signature": digest}, WebhookCredentials()) == "no_secret_configured"
    assert cause_of("zoho", {}, WebhookCredentials.of(["", ""])) == "no_secret_configured"


def test_shared_token_authenticates_only_when_configured() -> None:
    with_token = WebhookCredentials.of([SECRET], tokens=["shared-token-NOT-FOR-PRODUCTION"])

    assert authenticate("moodle", {}, BODY, with_token, body_token=lambda: "shared-token-NOT-FOR-PRODUCTION") == "token"
    assert authenticate("moodle", {"x-webhook-token": "shared-token-NOT-FOR-PRODUCTION"}, BODY, with_token) == "token"
    assert cause_of("moodle", {}, with_token, body_token=lambda: "wrong") == "token_mismatch"
    assert (
        cause_of("moodle", {}, CREDENTIALS, body_token=lambda: "shared-token-NOT-FOR-PRODUCTION") == "missing_signature"
    )


def test_token_only_source_still_rejects_unsigned_requests_without_a_token() -> None:
    token_only = WebhookCredentials.of([], tokens=["shared-token-NOT-FOR-PRODUCTION"])

    assert cause_of("zoho", {}, token_only) == "missing_signature"


def test_a_present_signature_decides_even_when_a_valid_token_is_sent() -> None:
    with_token = WebhookCredentials.of([SECRET], tokens=["shared-token-NOT-FOR-PRODUCTION"])
    headers = {"x-zoho-signature": sign(OTHER, BODY)}

    assert cause_of("zoho", headers, with_token, body_token=lambda: "shared-token-NOT-FOR-PRODUCTION") == (
        "signature_mismatch"
    )


def deluge_signature(secret: str, body: bytes) -> str:
    """What ``clients/zoho/sign_and_send.deluge`` sends: Deluge's ``zoho.encryption.hmacsha256``,
    which answers the HMAC-SHA256 in base64."""
    import base64
    import hashlib
    import hmac

    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_a_body_signed_the_way_the_deluge_function_signs_is_accepted() -> None:
    signature = deluge_signature(SECRET, BODY)

    assert len(signature) == 44
    assert authenticate("zoho", {"x-zoho-signature": signature}, BODY, CREDENTIALS) == "signature"
    assert cause_of("zoho", {"x-zoho-signature": deluge_signature(OTHER, BODY)}) == "signature_mismatch"
    assert cause_of("zoho", {"x-zoho-signature": signature[:-2] + "A="}) in (
        "signature_mismatch",
        "malformed_signature",
    )


def test_a_token_opens_its_own_route_and_no_other() -> None:
    credentials = WebhookCredentials.of([SECRET], route_tokens={"student": ["student-token"], "grade": ["grade-token"]})

    assert authenticate("zoho", {"x-webhook-token": "grade-token"}, BODY, credentials, route="grade") == "token"
    assert cause_of("zoho", {"x-webhook-token": "grade-token"}, credentials, route="student") == "token_wrong_route"
    assert cause_of("zoho", {"x-webhook-token": "guess"}, credentials, route="student") == "token_mismatch"
    # a signature still works on every route
    signed = {"x-zoho-signature": sign(SECRET, BODY)}
    assert authenticate("zoho", signed, BODY, credentials, route="student") == "signature"


def test_per_route_tokens_come_from_the_secrets_json() -> None:
    from event_router.verify.credentials import parse_secret

    parsed = parse_secret('{"secrets": ["s"], "tokens": {"student": "a", "grade": ["b", "c"]}}')

    assert parsed.route_tokens == {"student": ("a",), "grade": ("b", "c")}
    assert parsed.tokens == ()


# ------------------------------------------------------------------ signed timestamps

NOW = 1_796_000_000


def test_a_signature_with_its_timestamp_covers_both_and_is_accepted_within_the_window() -> None:
    headers = {"x-moodle-signature": sign(SECRET, BODY, NOW - 200), "x-moodle-timestamp": str(NOW - 200)}

    assert authenticate("moodle", headers, BODY, CREDENTIALS, now=NOW, max_age=300) == "signature"


def test_a_captured_request_replayed_after_the_window_is_refused() -> None:
    headers = {"x-moodle-signature": sign(SECRET, BODY, NOW - 301), "x-moodle-timestamp": str(NOW - 301)}

    assert cause_of("moodle", headers, now=NOW, max_age=300) == "stale_timestamp"  # type: ignore[arg-type]


def test_a_timestamp_changed_in_transit_breaks_the_signature() -> None:
    headers = {"x-moodle-signature": sign(SECRET, BODY, NOW - 400), "x-moodle-timestamp": str(NOW)}

    assert cause_of("moodle", headers, now=NOW) == "signature_mismatch"  # type: ignore[arg-type]


@pytest.mark.parametrize("stamp", ["soon", "-5", "1.5", "9" * 20])
def test_a_timestamp_that_is_not_unix_seconds_is_refused(stamp: str) -> None:
    headers = {"x-moodle-signature": sign(SECRET, BODY, stamp), "x-moodle-timestamp": stamp}

    assert cause_of("moodle", headers, now=NOW) == "malformed_timestamp"  # type: ignore[arg-type]


def test_a_signature_without_a_timestamp_is_accepted_during_the_transition_and_refused_after() -> None:
    headers = {"x-moodle-signature": sign(SECRET, BODY)}

    assert authenticate("moodle", headers, BODY, CREDENTIALS, now=NOW, untimed=True) == "signature"
    assert cause_of("moodle", headers, now=NOW, untimed=False) == "missing_timestamp"  # type: ignore[arg-type]
