"""Tampering with signed webhooks (docs/api.md).

Figure proved: for one real event of each source, every single-bit flip of the body
(2,600 to 4,000 per source), every bit flip of the signature's digest (256), every truncation
(64) and several extensions, a wrong secret and the other source's secret: all rejected.
"""

from __future__ import annotations

import pytest

from devstack.samples import DEV_SECRETS, SAMPLES
from event_router.errors import SignatureRejected
from event_router.verify.signatures import SIGNATURE_HEADERS, WebhookCredentials, authenticate, sign

CASES = {"zoho": SAMPLES["zoho-student-full"], "moodle": SAMPLES["moodle-grade-raw"]}


def rejected(source: str, body: bytes, signature: str) -> bool:
    credentials = WebhookCredentials.of([DEV_SECRETS[source]])
    try:
        authenticate(source, {SIGNATURE_HEADERS[source]: signature}, body, credentials)  # type: ignore[index, arg-type]
    except SignatureRejected:
        return True
    return False


def flipped(data: bytes, bit: int) -> bytes:
    altered = bytearray(data)
    altered[bit // 8] ^= 1 << (bit % 8)
    return bytes(altered)


@pytest.mark.parametrize("source", ["zoho", "moodle"])
def test_the_untouched_request_is_accepted(source: str) -> None:
    body = CASES[source].body

    assert not rejected(source, body, sign(DEV_SECRETS[source], body))


@pytest.mark.parametrize("source", ["zoho", "moodle"])
def test_every_bit_flip_of_the_body_is_rejected(source: str) -> None:
    body = CASES[source].body
    signature = sign(DEV_SECRETS[source], body)

    accepted = [bit for bit in range(len(body) * 8) if not rejected(source, flipped(body, bit), signature)]

    assert len(body) * 8 > 2500
    assert accepted == []


@pytest.mark.parametrize("source", ["zoho", "moodle"])
def test_every_bit_flip_of_the_signature_is_rejected(source: str) -> None:
    body = CASES[source].body
    digest = bytes.fromhex(sign(DEV_SECRETS[source], body))

    accepted = [bit for bit in range(256) if not rejected(source, body, flipped(digest, bit).hex())]

    assert accepted == []


@pytest.mark.parametrize("source", ["zoho", "moodle"])
def test_truncated_and_extended_signatures_are_rejected(source: str) -> None:
    body = CASES[source].body
    signature = sign(DEV_SECRETS[source], body)
    variants = [signature[:n] for n in range(64)] + [
        signature + "0",
        signature + "00",
        signature + signature,
        "sha256=" + signature[:-1],
        signature + " x",
    ]

    assert [v for v in variants if not rejected(source, body, v)] == []


@pytest.mark.parametrize("source", ["zoho", "moodle"])
def test_a_wrong_secret_and_the_other_sources_secret_are_rejected(source: str) -> None:
    body = CASES[source].body
    other = "moodle" if source == "zoho" else "zoho"

    assert rejected(source, body, sign("wrong-secret-NOT-FOR-PRODUCTION", body))
    assert rejected(source, body, sign(DEV_SECRETS[other], body))
    assert rejected(source, body, sign(DEV_SECRETS[source] + " ", body))
