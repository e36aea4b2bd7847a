"""Database migrations on every deploy: the handler of the ``DatabaseMigration`` custom resource.

CloudFormation creates or updates the resource whenever the common layer (where
the migrations live) changes; the handler runs Alembic's ``upgrade head`` and
reports the outcome, so a broken migration fails the deploy instead of hanging
it. Deleting the stack leaves the schema and its data alone.
"""

from typing import Any

from crhelper import CfnResource

from event_router.observability import logger
from event_router.operate.migrate import upgrade_configured
from event_router.settings import load_settings

SCHEMA = "event-router-schema"
settings = load_settings()
helper = CfnResource(json_logging=True, log_level="INFO", sleep_on_delete=0)


@helper.create
@helper.update
def migrate(event: dict[str, Any], context: Any) -> str:
    revision = upgrade_configured(settings)
    logger.info("database migrated", revision=revision)
    helper.Data["Revision"] = revision or ""
    return SCHEMA


@helper.delete
def keep_schema(event: dict[str, Any], context: Any) -> None:
    logger.info("stack deleted; the database schema and its data are kept")


def handler(event: dict[str, Any], context: Any) -> None:
    helper(event, context)
