"""The console's pages and actions (docs/operate.md, "The console"): server-rendered HTML, one plain
link per page, forms for the four actions, no script.

- ``GET /console``: the overview (``/stats``'s figures, the failures, the destinations, the last
  reconciliation runs and the last actions).
- ``GET /console/events``: the event log, filtered and paged by keyset (``?status=failed&before=<id>``).
- ``GET /console/event?id=<log id>``: one event, its payload (or that it was redacted), its attempts and
  error, the deliveries it caused.
- ``GET /console/student?by=email&q=...``: one student's history across Zoho, the router and Moodle.
- ``GET /console/actions``: what operators did; ``POST /console/actions``: replay an event, resend a
  delivery, resume a destination, start a reconciliation dry run. Each is recorded with who did it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError

from event_router.contract import MODULES, SOURCES, EventStatus
from event_router.errors import QueueUnavailable, StorageUnavailable
from event_router.observability import logger
from event_router.operate.console.session import Caller, NotAllowed, SignIn, caller_of, console_url
from event_router.operate.monitor import Monitor
from event_router.operate.privacy import StudentIdentifier
from event_router.operate.replay import Replayer
from event_router.operate.requeue import ReplayableDelivery
from event_router.settings import Settings
from event_router.store.console import PAGE, ConsoleStore, EventFilter
from event_router.store.deliveries import DeliveryStore
from event_router.store.privacy import PrivacyStore

TEMPLATES = Path(__file__).parent / "templates"
SEARCH_KINDS = {
    "email": "e-mail",
    "student_number": "student number",
    "zoho_record_id": "Zoho id",
    "moodle_user_id": "Moodle user id",
}
RESENDABLE: tuple[ReplayableDelivery, ...] = (
    "failed",
    "dead_lettered",
    "paused",
    "waiting",
    "pending",
    "delivered",
    "superseded",
    "conflict",
)
_HEADERS = {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


class BadRequest(Exception):
    """A filter or form value the console cannot use (400, said on the page)."""


def _when(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["when"] = _when
    environment.filters["pretty"] = _pretty
    environment.globals["query"] = lambda **given: urlencode({k: v for k, v in given.items() if v not in (None, "")})
    return environment


class Console:
    """Serves the console's routes from one HTTP API event each."""

    def __init__(
        self,
        settings: Settings,
        store: ConsoleStore,
        monitor: Monitor,
        replayer: Replayer,
        deliveries: DeliveryStore,
        privacy: PrivacyStore,
        start_reconciliation: Callable[[str], None],
        sign_in: SignIn | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._monitor = monitor
        self._replayer = replayer
        self._deliveries = deliveries
        self._privacy = privacy
        self._start_reconciliation = start_reconciliation
        self._sign_in = sign_in
        self._templates = _environment()
        self._pages: dict[str, Callable[[Caller, dict[str, str]], tuple[str, dict[str, Any]]]] = {
            "/console": self._overview,
            "/console/events": self._events,
            "/console/event": self._event,
            "/console/student": self._student,
            "/console/actions": self._actions,
        }

    def serve(self, event: dict[str, Any]) -> dict[str, Any]:
        http = (event.get("requestContext") or {}).get("http") or {}
        method, path = http.get("method", "GET"), event.get("rawPath") or http.get("path", "")
        query = dict(parse_qsl(event.get("rawQueryString") or "", keep_blank_values=False))
        if path in ("/console/login", "/console/callback", "/console/logout"):
            return self._signing_in(path, event, query)
        caller = caller_of(event, self._settings)
        if caller is None:
            return self._page(401, "message.html", None, title="Sign in", message="Sign in to use the console.")
        try:
            if method == "POST" and path == "/console/actions":
                return self._act(caller, event)
            view = self._pages.get(path)
            if view is None or method != "GET":
                return self._page(404, "message.html", caller, title="Not found", message="No such page.")
            template, context = view(caller, query)
            done = _number(query.get("done"), "done")  # the action just taken, whose outcome the page shows
            if done is not None:
                context["done"] = self._store.action(done)
            return self._page(200, template, caller, **context)
        except BadRequest as bad:
            return self._page(400, "message.html", caller, title="Not understood", message=str(bad))
        except NotAllowed as refused:
            return self._page(403, "message.html", caller, title="Not allowed", message=str(refused))
        except StorageUnavailable as error:
            logger.warning("console: database unavailable", error=str(error))
            return self._page(503, "message.html", caller, title="Unavailable", message="The database does not answer.")

    # ------------------------------------------------------------ pages

    def _overview(self, caller: Caller, query: dict[str, str]) -> tuple[str, dict[str, Any]]:
        status, stats = self._monitor.stats()
        if status != 200:
            raise StorageUnavailable("stats unavailable")
        failures = [
            *self._store.events(EventFilter(status=EventStatus.FAILED), limit=10),
            *self._store.events(EventFilter(status=EventStatus.DEAD_LETTERED), limit=10),
        ]
        failures.sort(key=lambda e: e["received_at"], reverse=True)
        # The day the rollups count (from the minute 24 hours ago), as the events page's filter.
        day_from = datetime.fromisoformat(stats["freshness"]["as_of"]).astimezone(UTC) - timedelta(hours=24)
        return "overview.html", {
            "title": "Overview",
            "stats": stats,
            "day_from": day_from.strftime("%Y-%m-%dT%H:%M"),
            "day_statuses": sorted(stats["last_24h"]["by_status"]),
            "failures": failures[:10],
            "actions": self._store.actions(10),
        }

    def _events(self, caller: Caller, query: dict[str, str]) -> tuple[str, dict[str, Any]]:
        where = EventFilter(
            status=_one_of(query.get("status"), tuple(EventStatus), "status"),
            source=_one_of(query.get("source"), SOURCES, "source"),
            module=_one_of(query.get("module"), MODULES, "module"),
            received_from=_time(query.get("from"), "from"),
            received_to=_time(query.get("to"), "to"),
        )
        before = _number(query.get("before"), "before")
        rows = self._store.events(where, before, PAGE + 1)
        filters = {k: query.get(k) for k in ("status", "source", "module", "from", "to")}
        return "events.html", {
            "title": "Events",
            "events": rows[:PAGE],
            "older": rows[PAGE - 1]["id"] if len(rows) > PAGE else None,
            "paged": before is not None,
            "filters": filters,
            "statuses": tuple(EventStatus),
            "sources": SOURCES,
            "modules": MODULES,
        }

    def _event(self, caller: Caller, query: dict[str, str]) -> tuple[str, dict[str, Any]]:
        log_id = _number(query.get("id"), "id")
        found = self._store.event(log_id) if log_id is not None else None
        if found is None:
            raise BadRequest("No event with that id.")
        return "event.html", {"title": f"Event {found['event_id']}", "event": found}

    def _student(self, caller: Caller, query: dict[str, str]) -> tuple[str, dict[str, Any]]:
        by, text = query.get("by", "email"), query.get("q", "").strip()
        context: dict[str, Any] = {"title": "Student", "kinds": SEARCH_KINDS, "by": by, "q": text}
        if not text:
            return "student.html", context
        if by not in SEARCH_KINDS:
            raise BadRequest("Search by e-mail, student number, Zoho id or Moodle user id.")
        try:
            given = StudentIdentifier.model_validate({by: text}).student()
        except ValidationError:
            raise BadRequest(f"That is not a {SEARCH_KINDS[by]}.") from None
        student = self._privacy.resolve(given)
        history = self._store.student(student)
        timeline = [{"at": e["received_at"], "kind": "event", "row": e} for e in history["events"]] + [
            {"at": d["updated_at"], "kind": "delivery", "row": d} for d in history["deliveries"]
        ]
        timeline.sort(key=lambda item: item["at"], reverse=True)
        found = any(history["mirror"].values()) or bool(timeline)
        return "student.html", context | {"student": student, "history": history, "timeline": timeline, "found": found}

    def _actions(self, caller: Caller, query: dict[str, str]) -> tuple[str, dict[str, Any]]:
        return "actions.html", {"title": "Actions", "actions": self._store.actions(100)}

    # ------------------------------------------------------------ actions

    def _act(self, caller: Caller, event: dict[str, Any]) -> dict[str, Any]:
        body = event.get("body") or ""
        if event.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
        form = dict(parse_qsl(body))
        caller.check_action(form.get("csrf", ""), {k.lower(): v for k, v in (event.get("headers") or {}).items()})
        action, target = form.get("action", ""), form.get("target", "").strip()
        outcome, detail = self._do(action, target, caller)
        action_id = self._store.record_action(caller.user, action, target, outcome, detail)
        logger.info("console action", action=action, outcome=outcome, action_id=action_id)
        back = form.get("return_to", "/console")
        if not back.startswith("/console") or "//" in back or "\\" in back:
            back = "/console"
        separator = "&" if "?" in back else "?"
        return {"statusCode": 303, "headers": {"location": f"{back}{separator}done={action_id}"}, "body": ""}

    def _do(self, action: str, target: str, caller: Caller) -> tuple[str, dict[str, Any]]:
        """Carry out one action: (its outcome in a few words, what it returned)."""
        if action == "replay":
            found = self._store.event(_required_number(target))
            if found is None:
                raise BadRequest("No event with that id.")
            answer = self._replayer.run({"mode": "log", "module": found["module"], "event_ids": [found["event_id"]]})
            replayed = answer.get("replayed", 0)
            return ("replayed" if replayed else f"not replayed: the event is {found['status']}"), _counts(answer)
        if action == "resend":
            delivery = self._store.delivery(_required_number(target))
            if delivery is None:
                raise BadRequest("No delivery with that id.")
            answer = self._replayer.run(
                {"mode": "deliveries", "delivery_ids": [delivery["id"]], "delivery_statuses": list(RESENDABLE)}
            )
            return ("sent again" if answer.get("replayed") else "not sent: nothing to resend"), _counts(answer)
        if action == "resume":
            if target not in ("moodle", "zoho"):
                raise BadRequest("Resume the moodle or the zoho destination.")
            resumed = self._deliveries.resume(target)
            answer = self._replayer.run({"mode": "deliveries", "destination": target, "delivery_statuses": ["paused"]})
            outcome = "resumed" if resumed else "was not paused"
            return f"{outcome}; {answer.get('replayed', 0)} deliveries sent again", _counts(answer)
        if action == "reconcile":
            try:
                self._start_reconciliation(f"console:{caller.user}")
            except QueueUnavailable:
                return "not started: the reconciliation queue did not answer", {}
            return "dry run requested", {"dry_run": True}
        raise BadRequest("Unknown action.")

    # ------------------------------------------------------------ rendering

    def _page(self, status: int, template: str, caller: Caller | None, **context: Any) -> dict[str, Any]:
        html = self._templates.get_template(template).render(
            viewer=caller,  # (``caller`` means something else inside a Jinja macro)
            csrf=caller.csrf_token() if caller else "",
            login=self._settings.console_login,
            **context,
        )
        return {"statusCode": status, "headers": dict(_HEADERS), "body": html}

    def _signing_in(self, path: str, event: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        if self._sign_in is None:  # make dev: nobody signs in
            return {"statusCode": 303, "headers": {"location": "/console"}, "body": ""}
        console = console_url(event)
        if path == "/console/login":
            return self._sign_in.login(console)
        if path == "/console/logout":
            return self._sign_in.logout(console)
        answer = self._sign_in.callback(console, event, query)
        if isinstance(answer, str):
            return self._page(400, "message.html", None, title="Sign-in failed", message=answer)
        return answer


def _counts(answer: dict[str, Any]) -> dict[str, Any]:
    """What the record keeps of replay's answer: counts and delivery ids, never event ids (they may
    name a student, and an erasure must be able to forget them)."""
    keep = ("examined", "replayed", "skipped", "failed", "delivery_ids", "error")
    return {key: answer[key] for key in keep if key in answer}


def _one_of(value: str | None, allowed: tuple[str, ...], name: str) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise BadRequest(f"Unknown {name} {value!r}.")
    return value


def _time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} is not a date and time (2026-12-04T09:00).") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _number(value: str | None, name: str) -> int | None:
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise BadRequest(f"{name} is not a number.")
    return int(value)


def _required_number(value: str) -> int:
    number = _number(value, "target")
    if number is None:
        raise BadRequest("Which one? The form named nothing.")
    return number
