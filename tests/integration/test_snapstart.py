"""Lambda SnapStart (docs/deploy.md, "SnapStart"): a verifier restored from a snapshot opens its own database
connection and reads its secrets afresh. The runtime's hooks (``snapshot_restore_py``'s registries) are run
here as Lambda runs them: the before-snapshot hooks in reverse order of registration, then the
after-restore hooks in order."""

from __future__ import annotations

import gc
import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import snapshot_restore_py
from sqlalchemy import Engine, text

from devstack.samples import DEV_SECRETS, zoho_webhook
from tests.integration.pipelines import Invoke

ROTATED = "rotated-zoho-webhook-secret-for-tests-NOT-FOR-PRODUCTION"  # fake, published on purpose


def snapshot() -> None:
    for hook, args, kwargs in reversed(snapshot_restore_py.get_before_snapshot()):
        hook(*args, **kwargs)


def restore() -> None:
    for hook, args, kwargs in snapshot_restore_py.get_after_restore():
        hook(*args, **kwargs)


def backends(db: Engine) -> set[int]:
    """The Zoho verifier's connections to the test database (its ``application_name``)."""
    with db.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'zoho-verifier'"
                " AND datname = current_database()"
            )
        )
        return {int(pid) for (pid,) in rows}


@pytest.fixture
def verifier(load: Callable[..., Invoke], secrets_manager: Any) -> tuple[Invoke, Any, str]:
    """A Zoho verifier whose webhook secret is in Secrets Manager, as deployed."""
    name = f"zoho-webhook-snapstart-{uuid.uuid4().hex[:8]}"
    arn = secrets_manager.create_secret(Name=name, SecretString=DEV_SECRETS["zoho"])["ARN"]
    invoke = load("ZohoWebhookFunction", ZOHO_WEBHOOK_SECRET="", ZOHO_WEBHOOK_SECRET_ARN=arn)
    return invoke, secrets_manager, arn


def test_a_restored_verifier_opens_a_fresh_connection(db: Engine, verifier: tuple[Invoke, Any, str]) -> None:
    invoke = verifier[0]
    # Connections of containers earlier tests dropped can outlive them until the garbage collector
    # frees them: this test looks only at the connections this verifier opens.
    gc.collect()
    earlier = backends(db)
    assert invoke(zoho_webhook("students", "5725767000000412101", Name="Ada").event())["statusCode"] == 202
    before = backends(db) - earlier

    snapshot()
    closed = backends(db)
    restore()
    assert invoke(zoho_webhook("students", "5725767000000412102", Name="Bo").event())["statusCode"] == 202

    assert before
    assert not before & closed  # the snapshot holds no connection
    assert backends(db) - before - earlier  # the restored container connected anew


def test_a_restored_verifier_reads_its_secret_afresh(db: Engine, verifier: tuple[Invoke, Any, str]) -> None:
    invoke, secrets_manager, arn = verifier
    assert invoke(zoho_webhook("students", "5725767000000412103", Name="Ada").event())["statusCode"] == 202
    secrets_manager.put_secret_value(SecretId=arn, SecretString=ROTATED)
    rotated = zoho_webhook("students", "5725767000000412104", Name="Bo").event({**DEV_SECRETS, "zoho": ROTATED})
    assert invoke(rotated)["statusCode"] == 401  # the container still holds the secret it read

    snapshot()
    restore()

    assert invoke(rotated)["statusCode"] == 202


def test_restored_containers_do_not_share_the_snapshots_random_state() -> None:
    random.seed(42)  # the state a snapshot would carry into every container
    drawn_without_restore = random.random()
    random.seed(42)

    snapshot()
    restore()

    assert random.random() != drawn_without_restore
