"""Runtime configuration: one validated model, read once per container from the environment.

A plain pydantic model validated from ``os.environ`` rather than pydantic-settings:
the verifiers' cold start is budgeted (docs/benchmarks.md) and pydantic-settings
adds about 0.15 s of imports for features (dotenv files, CLI parsing, nested
sources) that a Lambda function does not use.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Json

from event_router.contract import Module, Source


def _comma_separated(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


CommaSeparated = Annotated[tuple[str, ...], BeforeValidator(_comma_separated)]


def _https_or_loopback(value: Any) -> Any:
    """A destination's address: https, or plain http only to this machine (local development and
    tests). A Moodle web-service token must never cross a network in clear."""
    if not isinstance(value, str) or not value:
        return value
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return value
    raise ValueError("must be an https:// address (http:// is accepted only for 127.0.0.1, ::1 or localhost)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    from ipaddress import ip_address  # noqa: PLC0415 - only when a Moodle address is set: not on a verifier's start

    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


SecureUrl = Annotated[str, AfterValidator(_https_or_loopback)]


class Settings(BaseModel):
    """Every environment variable the functions read (docs/deploy.md, "Configuration of the functions")."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, hide_input_in_errors=True)

    database_url: str | None = Field(None, alias="DATABASE_URL")
    database_secret_arn: str | None = Field(None, alias="DATABASE_SECRET_ARN")
    database_host: str | None = Field(None, alias="DATABASE_HOST")
    database_port: int = Field(5432, alias="DATABASE_PORT")
    database_name: str = Field("event_router", alias="DATABASE_NAME")
    database_sslmode: str = Field("verify-full", alias="DATABASE_SSLMODE")
    database_sslrootcert: str | None = Field(None, alias="DATABASE_SSLROOTCERT")
    # The migration's list of the functions' logins: {"<database role>": "<login secret ARN>"}.
    database_logins: Json[dict[str, str]] | None = Field(None, alias="DATABASE_LOGINS")
    db_connect_timeout: float = Field(3.0, gt=0, alias="DB_CONNECT_TIMEOUT")
    db_statement_timeout_ms: int = Field(2500, gt=0, alias="DB_STATEMENT_TIMEOUT_MS")
    db_idle_ping_seconds: float = Field(30.0, ge=0, alias="DB_IDLE_PING_SECONDS")

    students_queue_url: str | None = Field(None, alias="STUDENTS_QUEUE_URL")
    enrollments_queue_url: str | None = Field(None, alias="ENROLLMENTS_QUEUE_URL")
    grades_queue_url: str | None = Field(None, alias="GRADES_QUEUE_URL")
    payments_queue_url: str | None = Field(None, alias="PAYMENTS_QUEUE_URL")
    dead_letter_queue_url: str | None = Field(None, alias="DEAD_LETTER_QUEUE_URL")
    sqs_connect_timeout: float = Field(2.0, gt=0, alias="SQS_CONNECT_TIMEOUT")
    sqs_read_timeout: float = Field(3.0, gt=0, alias="SQS_READ_TIMEOUT")
    sqs_max_attempts: int = Field(2, ge=1, alias="SQS_MAX_ATTEMPTS")

    zoho_webhook_secret: CommaSeparated = Field((), alias="ZOHO_WEBHOOK_SECRET")
    moodle_webhook_secret: CommaSeparated = Field((), alias="MOODLE_WEBHOOK_SECRET")
    zoho_webhook_token: CommaSeparated = Field((), alias="ZOHO_WEBHOOK_TOKEN")
    moodle_webhook_token: CommaSeparated = Field((), alias="MOODLE_WEBHOOK_TOKEN")
    zoho_webhook_secret_arn: str | None = Field(None, alias="ZOHO_WEBHOOK_SECRET_ARN")
    moodle_webhook_secret_arn: str | None = Field(None, alias="MOODLE_WEBHOOK_SECRET_ARN")
    secrets_max_age: int = Field(300, ge=0, alias="SECRETS_MAX_AGE")

    source: Source | None = Field(None, alias="SOURCE")

    moodle_url: SecureUrl | None = Field(None, alias="MOODLE_URL")
    moodle_token: str | None = Field(None, alias="MOODLE_TOKEN")
    moodle_token_secret_arn: str | None = Field(None, alias="MOODLE_TOKEN_SECRET_ARN")
    moodle_timeout_seconds: float = Field(10.0, gt=0, alias="MOODLE_TIMEOUT_SECONDS")
    moodle_student_role_id: int = Field(5, ge=1, alias="MOODLE_STUDENT_ROLE_ID")
    moodle_user_auth: str = Field("manual", alias="MOODLE_USER_AUTH")
    # Existing accounts the router may adopt: these sign-in methods only; and whether an adopted
    # account's e-mail follows Zoho's (docs/first-day.md).
    moodle_adoptable_auth: CommaSeparated = Field(("manual",), alias="MOODLE_ADOPTABLE_AUTH")
    moodle_adopted_email: Literal["keep", "overwrite"] = Field("keep", alias="MOODLE_ADOPTED_EMAIL")
    moodle_delivery_queue_url: str | None = Field(None, alias="MOODLE_DELIVERY_QUEUE_URL")
    destination: Literal["moodle", "zoho"] | None = Field(None, alias="DESTINATION")
    field_mapping: str | None = Field(None, alias="FIELD_MAPPING")  # JSON: docs/connect-moodle.md
    # Zoho CRM as a destination, and as the source of the records ids-only notifications name.
    zoho_data_centre: str = Field("com", alias="ZOHO_DATA_CENTRE")
    zoho_accounts_url: str | None = Field(None, alias="ZOHO_ACCOUNTS_URL")  # wins over the data centre
    zoho_credentials: str | None = Field(None, alias="ZOHO_CREDENTIALS")  # JSON; local development and tests
    zoho_credentials_secret_arn: str | None = Field(None, alias="ZOHO_CREDENTIALS_SECRET_ARN")
    zoho_api: bool = Field(False, alias="ZOHO_API")  # call Zoho with the shared token, without credentials
    zoho_max_concurrent_calls: int = Field(5, ge=1, le=25, alias="ZOHO_MAX_CONCURRENT_CALLS")
    zoho_timeout_seconds: float = Field(15.0, gt=0, alias="ZOHO_TIMEOUT_SECONDS")
    zoho_delivery_queue_url: str | None = Field(None, alias="ZOHO_DELIVERY_QUEUE_URL")
    zoho_notify_url: str | None = Field(None, alias="ZOHO_NOTIFY_URL")
    module: Module | None = Field(None, alias="MODULE")
    max_receive_count: int = Field(5, ge=1, alias="MAX_RECEIVE_COUNT")
    retry_base_seconds: int = Field(120, ge=0, le=43_200, alias="RETRY_BASE_SECONDS")
    retry_max_seconds: int = Field(43_200, ge=0, le=43_200, alias="RETRY_MAX_SECONDS")
    max_clock_skew_seconds: int = Field(300, ge=0, alias="MAX_CLOCK_SKEW_SECONDS")
    # A signed timestamp older (or newer) than this is refused; signatures without one are accepted
    # while ``UNTIMED_SIGNATURES`` is ``accept`` (the transition, docs/api.md).
    signature_max_age_seconds: int = Field(300, ge=1, alias="SIGNATURE_MAX_AGE_SECONDS")
    untimed_signatures: Literal["accept", "refuse"] = Field("accept", alias="UNTIMED_SIGNATURES")
    rejection_flush_seconds: float = Field(10.0, ge=0, alias="REJECTION_FLUSH_SECONDS")
    rejection_retention_days: int = Field(30, ge=1, alias="REJECTION_RETENTION_DAYS")
    payload_retention_days: int = Field(30, ge=1, alias="PAYLOAD_RETENTION_DAYS")
    health_cache_seconds: float = Field(5.0, ge=0, alias="HEALTH_CACHE_SECONDS")
    # The reconciliation: what one run may spend, and where it sends itself its follow-up.
    reconcile_zoho_credits: int = Field(5000, ge=1, alias="RECONCILE_ZOHO_CREDITS")
    reconcile_moodle_calls: int = Field(5000, ge=1, alias="RECONCILE_MOODLE_CALLS")
    reconcile_queue_url: str | None = Field(None, alias="RECONCILE_QUEUE_URL")
    # The operators' console (docs/operate.md, "The console"): deployed, its users sign in with the
    # stack's Cognito user pool; ``none`` (make dev only) serves it to whoever reaches the port.
    console_login: Literal["cognito", "none"] = Field("cognito", alias="CONSOLE_LOGIN")
    cognito_domain: str | None = Field(None, alias="COGNITO_DOMAIN")  # https://<prefix>.auth.<region>.amazoncognito.com
    cognito_user_pool_id: str | None = Field(None, alias="COGNITO_USER_POOL_ID")
    console_operators_group: str = Field("operators", alias="CONSOLE_OPERATORS_GROUP")
    # The key of the erasure register's keyed hashes (event_router/erasure.py): a Secrets Manager
    # secret deployed, a fake value in local development.
    erasure_key: str | None = Field(None, alias="ERASURE_KEY")
    erasure_key_secret_arn: str | None = Field(None, alias="ERASURE_KEY_SECRET_ARN")

    def queue_urls(self) -> dict[Module, str]:
        """The configured module queues."""
        urls: dict[Module, str | None] = {
            "students": self.students_queue_url,
            "enrollments": self.enrollments_queue_url,
            "grades": self.grades_queue_url,
            "payments": self.payments_queue_url,
        }
        return {module: url for module, url in urls.items() if url}

    def webhook_secrets(self, source: Source) -> tuple[str, ...]:
        return self.zoho_webhook_secret if source == "zoho" else self.moodle_webhook_secret

    def webhook_tokens(self, source: Source) -> tuple[str, ...]:
        return self.zoho_webhook_token if source == "zoho" else self.moodle_webhook_token

    def webhook_secret_arn(self, source: Source) -> str | None:
        return self.zoho_webhook_secret_arn if source == "zoho" else self.moodle_webhook_secret_arn

    def zoho_configured(self) -> bool:
        """Whether the router may call Zoho's API (to deliver, or to fetch what a notification names)."""
        return self.zoho_api or self.zoho_refreshes()

    def zoho_refreshes(self) -> bool:
        """Whether this function holds Zoho's client credentials, and so refreshes the shared token
        (deployed, the Zoho delivery function alone; the others only read that token)."""
        return bool(self.zoho_credentials or self.zoho_credentials_secret_arn)


@cache
def load_settings() -> Settings:
    """The settings of this container, validated once."""
    return Settings.model_validate(os.environ)
