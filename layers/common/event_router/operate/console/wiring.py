"""The console built from the container's settings: its own database connection (the operators'
login), the monitor's figures, replay's requeueing, and the reconciliation's follow-up queue."""

from __future__ import annotations

import json
from collections.abc import Callable

from event_router.core.aws import client, sqs_client
from event_router.errors import QueueUnavailable
from event_router.operate.console.pages import Console
from event_router.operate.console.session import SignIn
from event_router.operate.monitor import build_monitor
from event_router.operate.replay import build_replayer
from event_router.settings import Settings, load_settings
from event_router.store.connection import PreparedConnection, connection_params
from event_router.store.console import ConsoleStore
from event_router.store.deliveries import DeliveryStore
from event_router.store.privacy import PrivacyStore

CONSOLE_CLIENT = "console"  # the user pool's app client for the console (template.yaml)


def reconciliation_starter(settings: Settings) -> Callable[[str], None]:
    """Start a reconciliation dry run the way a run carries itself on: a message on its queue, which
    the reconciliation function (and only it, with its Zoho and Moodle credentials) takes up."""
    url = settings.reconcile_queue_url
    sqs = sqs_client(settings)

    def start(requested_by: str) -> None:
        if not url:
            raise QueueUnavailable("RECONCILE_QUEUE_URL is not set")
        try:
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"dry_run": True, "requested_by": requested_by}))
        except Exception as error:  # noqa: BLE001 - whatever the cause, the run was not started
            raise QueueUnavailable(f"reconciliation queue: {type(error).__name__}") from None

    return start


def build_console(settings: Settings | None = None) -> Console:
    settings = settings or load_settings()
    connection = PreparedConnection(connection_params(settings, "console"), settings.db_idle_ping_seconds)
    return Console(
        settings,
        ConsoleStore(connection),
        build_monitor(settings),
        build_replayer(settings),
        DeliveryStore(connection),
        PrivacyStore(connection),
        reconciliation_starter(settings),
        sign_in=sign_in(settings) if settings.console_login == "cognito" else None,
    )


def sign_in(settings: Settings) -> SignIn:
    """Sign-in through the user pool's hosted pages, with its ``console`` app client (looked up on the
    first sign-in: the client's callback address names the API, which names this function)."""
    if not (settings.cognito_domain and settings.cognito_user_pool_id):
        raise ValueError("set COGNITO_DOMAIN and COGNITO_USER_POOL_ID for the console's sign-in")
    pool = settings.cognito_user_pool_id
    found: list[str] = []

    def client_id() -> str:
        if not found:
            clients = client("cognito-idp").list_user_pool_clients(UserPoolId=pool, MaxResults=60)["UserPoolClients"]
            found.append(next(c["ClientId"] for c in clients if c["ClientName"] == CONSOLE_CLIENT))
        return found[0]

    return SignIn(settings.cognito_domain, client_id)
