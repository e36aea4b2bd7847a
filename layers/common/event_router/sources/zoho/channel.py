"""Zoho's notification channel: the router asks Zoho (``/actions/watch``) to call its notify route
with the ids of every record created, changed or deleted in the four modules.

- **Token.** Zoho echoes the channel's ``token`` in every callback and the verifier checks it:
  within Zoho's 50 characters, derived from the Zoho webhook secret (``derived.py``).
- **Channel id.** Random, made once and kept (a fixed number would collide with another
  integration's channel in the same organisation).
- **Related records.** ``notify_on_related_action`` is false: the router watches each module itself,
  and a student notified because one of their enrolments changed would only cost a read.
- **Expiry.** Zoho keeps a channel at most a week, and silently gives an hour to one asked for
  longer (or for no expiry). The expiry Zoho *answers* is kept, and the channel renewed when half
  its life or two days are left, whichever comes first. Renewal updates the channel (PATCH); where
  Zoho refuses (the channel has lapsed), it is enabled again (POST).
- **Where it points.** The notify URL, the watched events and the accounts server are kept with
  the channel: when any changes (a new deploy, another data centre, a restarted local stand-in),
  the channel is registered afresh at once.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from event_router.contract import ZOHO_MODULE_NAMES
from event_router.deliver.skeleton import Step
from event_router.deliver.zoho.client import ZohoError, record_error
from event_router.derived import channel_token
from event_router.observability import Metric, count, logger
from event_router.settings import Settings
from event_router.verify.credentials import credentials_for

CHANNEL_DAYS = 7  # Zoho's longest channel
RENEW_BEFORE = timedelta(days=2)  # of a week's channel: a day of failed renewals is survivable
WATCHED = tuple(f"{name}.all" for name in ZOHO_MODULE_NAMES.values())


def new_channel_id() -> int:
    """A random 18-digit channel id (Zoho wants a long)."""
    return 10**17 + secrets.randbelow(9 * 10**17)


class Watcher(Protocol):
    """Zoho's watch API, as the Zoho client offers it."""

    @property
    def accounts_url(self) -> str: ...

    def watch(self, method: str, channel: dict[str, Any]) -> list[Any]: ...


@dataclass(frozen=True)
class Channel:
    """The channel as Zoho last confirmed it."""

    id: int
    expires_at: datetime  # as Zoho answered it
    registered_at: datetime
    notify_url: str
    events: tuple[str, ...]
    accounts_url: str

    @classmethod
    def of(cls, stored: Mapping[str, Any] | None) -> Channel | None:
        """The channel kept in the destination's identity (None when there is none, or an old shape)."""
        if not stored:
            return None
        try:
            return cls(
                int(stored["id"]),
                datetime.fromisoformat(str(stored["expires_at"])),
                datetime.fromisoformat(str(stored["registered_at"])),
                str(stored["notify_url"]),
                tuple(stored["events"]),
                str(stored["accounts_url"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def stored(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "expires_at": self.expires_at.isoformat(),
            "registered_at": self.registered_at.isoformat(),
            "notify_url": self.notify_url,
            "events": list(self.events),
            "accounts_url": self.accounts_url,
        }

    def due(self, now: datetime) -> bool:
        """Whether to renew now: half its life, or ``RENEW_BEFORE``, is left."""
        margin = min(RENEW_BEFORE, (self.expires_at - self.registered_at) / 2)
        return now >= self.expires_at - margin


class ChannelRefused(ZohoError):
    """Zoho answered, but did not take the channel (its per-channel result)."""


def keep_channel(
    zoho: Watcher, stored: Mapping[str, Any] | None, notify_url: str, secret: bytes, now: datetime | None = None
) -> tuple[dict[str, Any], bool]:
    """Register or renew the channel when due: (what to keep, whether Zoho was asked). Raises
    ``ZohoError`` when Zoho refused (``ChannelRefused`` when it refused this channel)."""
    now = now or datetime.now(UTC)
    current = Channel.of(stored)
    same = current is not None and (current.notify_url, current.events, current.accounts_url) == (
        notify_url,
        WATCHED,
        zoho.accounts_url,
    )
    if current is not None and same and not current.due(now):
        return current.stored(), False
    channel_id = current.id if current is not None else new_channel_id()
    asked = (now + timedelta(days=CHANNEL_DAYS) - timedelta(minutes=5)).replace(microsecond=0)
    request = {
        "channel_id": channel_id,
        "events": list(WATCHED),
        "channel_expiry": asked.isoformat(),
        "token": channel_token(secret),
        "notify_url": notify_url,
        "notify_on_related_action": False,
    }
    results = zoho.watch("PATCH", request) if current is not None and same else []
    if not results or any(record_error(r) for r in results):
        results = zoho.watch("POST", request)  # new, moved, or lapsed: enable it (again)
    errors = [e for e in (record_error(r) for r in results) if e is not None]
    if errors or not results:
        first = errors[0] if errors else ZohoError("transient", "noanswer", "Zoho answered nothing for the channel")
        raise ChannelRefused(first.kind, first.code, str(first))
    expiry = _answered_expiry(results) or asked
    channel = Channel(channel_id, expiry, now.replace(microsecond=0), notify_url, WATCHED, zoho.accounts_url)
    return channel.stored(), True


def _answered_expiry(results: list[Any]) -> datetime | None:
    """The earliest ``channel_expiry`` Zoho gave back for the channel's events."""
    found = []
    for result in results:
        events = ((result or {}).get("details") or {}).get("events") or []
        for event in events:
            try:
                found.append(datetime.fromisoformat(str(event["channel_expiry"])))
            except (KeyError, TypeError, ValueError):
                continue
    return min(found) if found else None


class ChannelCheck:
    """The watch channel's step of the scheduled Zoho check: register or renew it when due, kept in
    the check's ``identity`` (``/stats`` shows it). Its failure is counted and pauses nothing."""

    def __init__(self, notify_url: str | None, webhook_secret: Callable[[], bytes | None]) -> None:
        self._notify_url = notify_url
        self._webhook_secret = webhook_secret

    def __call__(self, zoho: Watcher, identity: dict[str, Any]) -> dict[str, Step]:
        secret = self._webhook_secret()
        if not self._notify_url or not secret:
            return {"channel": Step(True, "not configured")}
        try:
            channel, asked = keep_channel(zoho, identity.get("channel"), self._notify_url, secret)
        except ZohoError as error:
            count(Metric.WATCH_RENEWAL_FAILED, value=1, destination="zoho")
            logger.error("Zoho refused the watch channel", code=error.code)
            return {"channel": Step.failed(error)}
        identity["channel"] = channel
        count(Metric.WATCH_RENEWAL_FAILED, value=0, destination="zoho")
        if asked:
            logger.info("Zoho watch channel registered", expires_at=channel["expires_at"], events=len(WATCHED))
        return {"channel": Step(True, f"until {channel['expires_at']}")}


def channel_check(settings: Settings) -> ChannelCheck:
    """The channel step of this deployment: the notify route, the token derived from the Zoho webhook secret."""
    secrets = credentials_for("zoho", settings)

    def webhook_secret() -> bytes | None:
        current = secrets.current().secrets
        return current[0] if current else None

    return ChannelCheck(settings.zoho_notify_url, webhook_secret)
