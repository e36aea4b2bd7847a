"""Retention (docs/operate.md, "Student data: retention, erasure, export"): what the sweep deletes as
it ages — settled payloads older than ``PAYLOAD_RETENTION_DAYS`` become tombstones, counts of
refused requests older than ``REJECTION_RETENTION_DAYS`` are deleted, and so are the day's rollups
older than two days.
"""

from __future__ import annotations

from dataclasses import dataclass

from event_router.store.operations import EventLogOperations
from event_router.store.privacy import PrivacyStore

BATCH, BATCHES = 500, 20  # payloads redacted per statement, statements per sweep


@dataclass
class Retention:
    """Ages out what the router keeps, in bounded batches: one run never holds long locks."""

    log: EventLogOperations
    privacy: PrivacyStore | None
    rejection_days: int = 30
    payload_days: int = 30

    def delete_old_rejections(self, dry_run: bool) -> int:
        return self.log.delete_rejections_older_than(self.rejection_days, dry_run=dry_run)

    def delete_old_rollups(self) -> int:
        """The day's figures older than two days (``/stats`` reads the last one)."""
        return self.log.delete_old_rollups()

    def redact_old_payloads(self) -> int:
        """Settled payloads past their retention, each batch its own short transaction."""
        if self.privacy is None:
            return 0
        redacted = 0
        for _ in range(BATCHES):
            done = self.privacy.redact_old_payloads(self.payload_days, BATCH)
            redacted += done
            if done < BATCH:
                break
        return redacted
