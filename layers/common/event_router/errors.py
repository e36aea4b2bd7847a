"""Domain exceptions. ``verify/apigateway.py`` maps the webhook ones to responses in one place."""

from __future__ import annotations

from typing import Literal, TypedDict


class Problem(TypedDict):
    """One entry of a 400 response's ``details`` list: which field, what is wrong."""

    field: str
    problem: str


class WebhookRejected(Exception):
    """A webhook the router refuses; ``cause`` is recorded and counted."""

    cause: str = "rejected"

    def __init__(self, message: str, cause: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if cause is not None:
            self.cause = cause


class PayloadTooLarge(WebhookRejected):
    cause = "payload_too_large"


class SignatureRejected(WebhookRejected):
    """Verification failed; ``cause`` says why, the response never does."""

    cause = "invalid_signature"


class InvalidPayload(WebhookRejected):
    cause = "invalid_payload"

    def __init__(self, details: list[Problem], message: str = "The request body is not a valid event") -> None:
        super().__init__(message)
        self.details = details


class UnknownRoute(WebhookRejected):
    cause = "unknown_route"


class ServiceUnavailable(Exception):
    """Neither the event log nor the queue could take an accepted event."""


class StorageUnavailable(Exception):
    """The event log (Postgres) could not be reached or refused the statement."""


class DataRejected(StorageUnavailable):
    """Postgres refused the statement's values (SQLSTATE class 22 or 23): retrying cannot help."""


class QueueUnavailable(Exception):
    """The module queue (SQS) could not be reached or refused the message."""


class CredentialsUnavailable(Exception):
    """The webhook secrets could not be loaded, so nothing can be verified."""


# What a refusal by Moodle or Zoho means for a delivery: the router's set-up is wrong (pause the
# destination), the data cannot work (fail the delivery), or it may pass (retry).
Refusal = Literal["configuration", "data", "transient"]


class DeliveryError(Exception):
    """Moodle or Zoho CRM refused a call or did not answer; ``kind`` says what a delivery should do."""

    def __init__(self, kind: Refusal, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.kind: Refusal = kind
        self.code = code
