"""The stand-in's Notification API: channels registered, renewed and removed at ``/actions/watch``, and the
callback with the ids of every change of a watched module.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from devstack.zoho_limits import API_PREFIX, DEFAULT_CHANNEL, MAX_CHANNEL, MAX_CHANNEL_TOKEN, error


class Watching:
    """The watch channels of an organisation (a part of ``Org``)."""

    lock: threading.RLock
    records: dict[str, dict[str, dict[str, Any]]]
    channels: dict[str, dict[str, Any]]
    notifications: list[dict[str, Any]]
    api_url: str

    def _watch(self, method: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if method == "DELETE":
            for channel_id in query.get("channel_ids", "").split(","):
                self.channels.pop(channel_id, None)
            return 200, {"watch": [{"code": "SUCCESS", "status": "success", "message": "unsubscribed"}]}
        if method not in ("POST", "PATCH") or not isinstance(body, dict) or not isinstance(body.get("watch"), list):
            return 400, error("INVALID_DATA", "invalid data", api_name="watch")
        answers = []
        for channel in body["watch"]:
            answers.append(self._subscribe(method, channel))
        return 200, {"watch": answers}

    def _subscribe(self, method: str, channel: Any) -> dict[str, Any]:
        try:
            channel_id = str(int(channel["channel_id"]))
            events = [str(e) for e in channel["events"]]
            notify_url = str(channel["notify_url"])
            asked = channel.get("channel_expiry")
            expiry = datetime.fromisoformat(str(asked)) if asked else None
        except (KeyError, TypeError, ValueError):
            return error("INVALID_DATA", "invalid data", api_name="watch")
        token = channel.get("token")
        if token is not None and len(str(token)) > MAX_CHANNEL_TOKEN:
            return error("INVALID_DATA", "invalid data", api_name="token", maximum_length=MAX_CHANNEL_TOKEN)
        now = datetime.now(UTC)
        if expiry is not None and expiry <= now:
            return error("INVALID_DATA", "the channel expiry is in the past", api_name="channel_expiry")
        if expiry is None or expiry > now + MAX_CHANNEL:
            expiry = (now + DEFAULT_CHANNEL).replace(microsecond=0)  # Zoho's silent fallback
        if method == "PATCH" and channel_id not in self.channels:
            return error("INVALID_DATA", "the channel is not subscribed", api_name="channel_id")
        unknown = [e for e in events if e.split(".")[0] not in self.records]
        if unknown:
            return error("INVALID_MODULE", "the module name given seems to be invalid", api_name="events")
        self.channels[channel_id] = {
            "events": events,
            "expiry": expiry,
            "notify_url": notify_url,
            "token": token,
            "notify_on_related_action": channel.get("notify_on_related_action", True),
        }
        details = {
            "events": [
                {"channel_expiry": expiry.isoformat(), "resource_name": e.split(".")[0], "channel_id": channel_id}
                for e in events
            ]
        }
        message = "Successfully subscribed for actions-watch of the given module"
        return {"code": "SUCCESS", "details": details, "message": message, "status": "success"}

    def _notify(self, module: str, operation: str, ids: list[str], fields: list[str]) -> None:
        """Call every live channel watching this module (Zoho calls back after the change)."""
        with self.lock:
            now = datetime.now(UTC)
            targets = [
                (channel_id, c)
                for channel_id, c in self.channels.items()
                if c["expiry"] > now and ({f"{module}.all", f"{module}.{operation}"} & set(c["events"]))
            ]
        for channel_id, channel in targets:
            callback = {
                "server_time": int(time.time() * 1000),
                "query_params": {},
                "module": module,
                "resource_uri": f"{self.api_url}{API_PREFIX}{module}",
                "ids": ids,
                "affected_fields": fields if operation == "update" else [],
                "operation": operation,
                "channel_id": channel_id,
                "token": channel["token"],
            }
            request = urllib.request.Request(  # noqa: S310 - the router's notify URL, on loopback
                channel["notify_url"],
                data=json.dumps(callback).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            except OSError:
                status = 0
            with self.lock:
                self.notifications.append({"module": module, "operation": operation, "ids": ids, "status": status})
