"""The initial import and the scheduled reconciliation, one capability (docs/first-day.md).

A run goes through its phases in order, each from a checkpoint kept after every page, so a run that
runs out of its budget or its time stops where it is and the next invocation carries on:

1. ``zoho_failures``: Zoho's report of the workflow webhooks it failed to deliver (the last 30 days,
   200 a page per module) is kept and shown, and those records are read again first (100 a call);
2. ``zoho_students``, ``zoho_enrollments``, ``zoho_classes``: the records changed since the last
   completed run (the first run: all), read with COQL, 2,000 a call in id order (a keyset, so no
   100,000-row offset limit). Each record enters the pipeline as an event whose id is its module, id
   and ``Modified_Time``: a rerun is a duplicate, and the stale-write guard keeps newer data. A class
   whose Moodle course changed sends its enrolments again;
3. ``moodle_users``: every account the router manages is read back from Moodle, 100 a call, and
   compared with what the mirror says it should be: a missing account, one suspended by hand, one
   not suspended although its student was deleted, or fields that differ become a delivery (the
   router's fields win on its accounts). Students never given an account get a delivery too;
4. ``moodle_enrolments``: each course's active enrolments, one call a course, against what the
   managed students' enrolments ask: one removed or suspended by hand, or one still active that
   should not be, becomes a delivery;
5. ``grades``: each course's grades (one call a course) of managed students against ``BTEC_Grades``
   in Zoho (one COQL call a course): a grade Zoho lacks or holds differently enters the pipeline
   as a Moodle grade event, and so goes to Zoho.

A dry run reads the same and reports the same figures, and writes nothing: no event, no delivery,
nothing in Zoho or Moodle. Every run is recorded in ``reconcile_runs`` with its figures.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import batched
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from event_router.contract import USER_GRADED, ZOHO_CLASSES_MODULE, ZOHO_MODULE_NAMES, ZOHO_RECORDS_PER_CALL, Module
from event_router.deliver.moodle.client import Moodle
from event_router.deliver.moodle.rules import (
    AccountPolicy,
    CannotDeliver,
    MoodleUser,
    Provisioner,
    enrolment_state,
)
from event_router.deliver.zoho.client import COQL_LIMIT, ZohoClient
from event_router.mapping import FieldMapping, field_mapping
from event_router.messages import EventMessage, MoodleFacts, MoodleGrade, ZohoRecord
from event_router.observability import Metric, count, logger
from event_router.settings import Settings, load_settings
from event_router.store.connection import PreparedConnection, connection_params
from event_router.store.deliveries import DeliveryStore, Link
from event_router.store.reconcile import Managed, ReconcileStore, Run

PHASES = (
    "zoho_failures",
    "zoho_students",
    "zoho_enrollments",
    "zoho_classes",
    "moodle_users",
    "moodle_enrolments",
    "grades",
)
FAILURE_MODULES: tuple[Module, ...] = ("students", "enrollments", "grades", "payments")
OVERLAP = timedelta(minutes=10)  # read a little before the last run started: clocks and slow writes
DEADLINE_MARGIN_MS = 60_000  # stop this long before Lambda would
USERS_PAGE = 100  # managed accounts a Moodle call
COURSES_PAGE = 20  # courses a page of the enrolment and grade phases


class Stop(Exception):
    """The run stops here for now; ``reason`` says why (its checkpoint is kept)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ReconcileRequest(BaseModel):
    """What an invocation asks: ``{"dry_run": true}``, ``{"full": true}`` (read all of Zoho, not
    only what changed), or the continuation of a run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dry_run: bool = False
    full: bool = False
    run_id: int | None = None  # continue this run (the function's own follow-up message)
    requested_by: str = Field(default="manual", max_length=200)


@dataclass(frozen=True)
class Budgets:
    """What one run may spend, at most: Zoho credits, Moodle web-service calls."""

    zoho_credits: int = 5000
    moodle_calls: int = 5000


class Ingest(Protocol):
    """Where events the run makes go: their module's queue (the ones SQS took come back)."""

    def publish_many(self, events: list[EventMessage]) -> list[EventMessage]: ...


class Meter:
    """Counts a run's Zoho credits and Moodle calls, and holds them to its budgets, and its time.

    The budgets hold from the run's start, or from when it carries on after a budget stopped it (the
    next night's allowance); an invocation that carries on after running out of time spends from the
    same allowance as the one before it."""

    def __init__(self, run: Run, budgets: Budgets, remaining_ms: Callable[[], int]) -> None:
        self._counts = run.counts
        self._window = run.counts.setdefault("budget", {"zoho_credits": 0, "moodle_calls": 0})
        self._budgets = budgets
        self._remaining_ms = remaining_ms

    def zoho(self, credits: int) -> None:
        if self._window["zoho_credits"] + credits > self._budgets.zoho_credits:
            raise Stop("zoho credit budget")
        self._window["zoho_credits"] += credits
        spent = self._counts.setdefault("zoho", {})
        spent["credits"] = spent.get("credits", 0) + credits
        spent["calls"] = spent.get("calls", 0) + 1

    def moodle(self) -> None:
        if self._window["moodle_calls"] + 1 > self._budgets.moodle_calls:
            raise Stop("moodle call budget")
        self._window["moodle_calls"] += 1
        spent = self._counts.setdefault("moodle", {})
        spent["calls"] = spent.get("calls", 0) + 1

    def time(self) -> None:
        if self._remaining_ms() < DEADLINE_MARGIN_MS:
            raise Stop("time")


class MeteredMoodle:
    """Moodle, each call counted against the run's budget."""

    def __init__(self, moodle: Moodle, meter: Meter) -> None:
        self._moodle, self._meter = moodle, meter

    def call(self, function: str, params: Mapping[str, Any] | None = None) -> Any:
        self._meter.moodle()
        return self._moodle.call(function, params)


def coql_credits(limit: int) -> int:
    """What Zoho charges for a COQL call by its ``LIMIT``."""
    return 1 if limit <= 200 else 2 if limit <= 1000 else 3


class Reconciler:
    """Runs (or carries on) one reconciliation."""

    def __init__(
        self,
        store: ReconcileStore,
        deliveries: DeliveryStore,
        zoho: Callable[[], ZohoClient] | None,
        moodle: Callable[[], Moodle] | None,
        ingest: Ingest,
        send: Callable[[list[tuple[int, str]]], None],
        mapping: FieldMapping,
        *,
        policy: AccountPolicy | None = None,
        budgets: Budgets | None = None,
        continue_later: Callable[[int, bool], None] | None = None,
        grades_to_zoho: bool = True,
    ) -> None:
        self._store = store
        self._deliveries = deliveries
        self._zoho = zoho
        self._moodle = moodle
        self._ingest = ingest
        self._send = send
        self._mapping = mapping
        self._policy = policy or AccountPolicy()
        self._budgets = budgets or Budgets()
        self._continue_later = continue_later
        self._grades_to_zoho = grades_to_zoho

    # ------------------------------------------------------------ one invocation

    def invoke(self, event: dict[str, Any], remaining_ms: Callable[[], int]) -> dict[str, Any]:
        """The function's event: a request (``make reconcile``, ``aws lambda invoke``, the schedule),
        or its own follow-up message (SQS) carrying on a run that ran out of time."""
        if "Records" in event:
            answers = []
            for record in event["Records"]:
                follow_up = json.loads(record.get("body") or "{}")
                request = ReconcileRequest(
                    dry_run=bool(follow_up.get("dry_run")),
                    run_id=follow_up.get("run_id"),
                    # a run started from the console says who started it; a run's own follow-up does not
                    requested_by=str(follow_up.get("requested_by") or "follow-up")[:200],
                )
                answers.append(self.handle(request, remaining_ms))
            return {"runs": answers}
        try:
            request = ReconcileRequest.model_validate(event or {})
        except ValidationError as invalid:
            return {
                "error": "invalid_request",
                "details": [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in invalid.errors()],
            }
        return self.handle(request, remaining_ms)

    def handle(self, request: ReconcileRequest, remaining_ms: Callable[[], int]) -> dict[str, Any]:
        """Start, carry on, or (when another invocation is at it) leave alone; the run's summary."""
        with self._store.exclusive() as alone:
            if not alone:
                return {"status": "busy", "message": "another reconciliation is running"}
            run = self._store.resumable(request.dry_run)
            if run is not None and (run.error or "").endswith("budget"):
                run.counts["budget"] = {"zoho_credits": 0, "moodle_calls": 0}  # a new allowance
            if run is None:
                since = None if request.full else self._since()
                run = self._store.start(
                    dry_run=request.dry_run, requested_by=request.requested_by, since=since, phase=PHASES[0]
                )
            meter = Meter(run, self._budgets, remaining_ms)
            try:
                self._go(run, meter)
            except Stop as stop:
                self._store.save(run)
                self._store.end(run, "paused", stop.reason)
                if stop.reason == "time" and self._continue_later is not None:
                    self._continue_later(run.id, run.dry_run)
            except Exception as error:  # noqa: BLE001 - kept: the next invocation resumes the run
                self._store.save(run)
                reason = f"{type(error).__name__}: {getattr(error, 'code', '') or error}"
                logger.error("reconciliation stopped; the next run resumes it", phase=run.phase, error=reason)
                self._store.end(run, "paused", reason[:500])
                count(Metric.RECONCILE_FAILED, value=1)
            else:
                run.counts["conflicts"] = self._store.conflicts()
                self._store.save(run)
                self._store.end(run, "completed")
                self._report(run)
        return run.summary()

    def _since(self) -> datetime | None:
        last = self._store.last_completed_start()
        return last - OVERLAP if last is not None else None

    def _go(self, run: Run, meter: Meter) -> None:
        steps: dict[str, Callable[[Run, Meter], bool]] = {
            "zoho_failures": self._zoho_failures,
            "zoho_students": lambda r, m: self._zoho_module(r, m, "students"),
            "zoho_enrollments": lambda r, m: self._zoho_module(r, m, "enrollments"),
            "zoho_classes": self._zoho_classes,
            "moodle_users": self._moodle_users,
            "moodle_enrolments": self._moodle_enrolments,
            "grades": self._grades,
        }
        while run.phase in steps:
            meter.time()
            if steps[run.phase](run, meter):  # the phase is done: on to the next
                following = PHASES.index(run.phase) + 1
                run.phase = PHASES[following] if following < len(PHASES) else "done"
                run.checkpoint = {}
            self._store.save(run)

    def _report(self, run: Run) -> None:
        counts = run.counts
        for kind, found in (counts.get("drift") or {}).items():
            count(Metric.RECONCILE_DRIFT, value=found, kind=kind)
        count(Metric.RECONCILE_CONFLICTS, value=counts.get("conflicts", 0))
        count(Metric.RECONCILE_ZOHO_CREDITS, value=(counts.get("zoho") or {}).get("credits", 0))
        count(Metric.RECONCILE_MOODLE_CALLS, value=(counts.get("moodle") or {}).get("calls", 0))
        count(Metric.RECONCILE_FAILED, value=0)
        logger.info("reconciliation completed", run_id=run.id, dry_run=run.dry_run, counts=json.dumps(counts))

    # ------------------------------------------------------------ Zoho → router

    def _zoho_failures(self, run: Run, meter: Meter) -> bool:
        """Zoho's failed webhooks, one page at a time, each of their records read again."""
        if self._zoho is None:
            return True
        zoho = self._zoho()
        index = int(run.checkpoint.get("module", 0))
        page = int(run.checkpoint.get("page", 1))
        if index >= len(FAILURE_MODULES):
            return True
        module = FAILURE_MODULES[index]
        meter.zoho(1)
        failures, more = zoho.webhook_failures(ZOHO_MODULE_NAMES[module], page)
        rows = [row for row in (_failure_row(module, f, run.id) for f in failures) if row is not None]
        _add(run.counts, "zoho", "webhook_failures", len(rows))
        if not run.dry_run:  # a failure an earlier run saw has had its record read already
            new = self._store.record_failures(rows)
            rows = [r for r in rows if r["failure_key"] in new]
        ids = sorted({r["record_id"] for r in rows})
        for chunk in batched(ids, ZOHO_RECORDS_PER_CALL):
            meter.zoho(1)
            records = zoho.records(
                ZOHO_MODULE_NAMES[module], list(chunk), self._mapping.zoho_fields(module, also=False)
            )
            _add(run.counts, "zoho", "refetched", len(records))
            self._enter(run, [zoho_event(module, r) for r in records if r.get("Modified_Time")])
        run.checkpoint = {"module": index, "page": page + 1} if more else {"module": index + 1, "page": 1}
        return not more and index + 1 >= len(FAILURE_MODULES)

    def _zoho_module(self, run: Run, meter: Meter, module: Module) -> bool:
        """One page (2,000) of a module's records changed since the last run, in id order."""
        if self._zoho is None:
            return True
        rows = self._coql(run, meter, ZOHO_MODULE_NAMES[module], self._mapping.zoho_fields(module, also=False))
        _add(run.counts, "zoho", f"{module}_read", len(rows))
        self._enter(run, [zoho_event(module, r) for r in rows if r.get("Modified_Time")])
        return len(rows) < COQL_LIMIT

    def _zoho_classes(self, run: Run, meter: Meter) -> bool:
        """Classes changed since the last run: a class whose Moodle course changed sends its
        enrolments to Moodle again."""
        if self._zoho is None:
            return True
        field = self._mapping.class_course_idnumber
        rows = self._coql(run, meter, ZOHO_CLASSES_MODULE, ["Name", "Modified_Time", field])
        _add(run.counts, "zoho", "classes_read", len(rows))
        for row in rows:
            idnumber = str(row.get(field) or "").strip() or None
            if run.dry_run:
                continue
            for enrolment in self._store.set_class_course(str(row["id"]), idnumber):
                self._repair(run, "class_course_changed", "enrolment", enrolment)
        return len(rows) < COQL_LIMIT

    def _coql(self, run: Run, meter: Meter, module: str, fields: list[str]) -> list[dict[str, Any]]:
        after = str(run.checkpoint.get("after_id", "0"))
        where = f"id > {int(after)}"
        if run.since is not None:
            where += f" and Modified_Time >= '{run.since.astimezone(UTC).isoformat(timespec='seconds')}'"
        query = f"select {', '.join(fields)} from {module} where {where} order by id asc limit {COQL_LIMIT}"
        meter.zoho(coql_credits(COQL_LIMIT))
        rows = self._zoho().coql(query) if self._zoho else []
        if rows:
            run.checkpoint = {"after_id": str(rows[-1]["id"])}
        return rows

    def _enter(self, run: Run, events: list[EventMessage]) -> None:
        """Events into the pipeline (logged, then queued), each once; a dry run only counts them."""
        if not events:
            return
        by_source: dict[str, list[EventMessage]] = {}
        for event in events:
            by_source.setdefault(event.source, []).append(event)
        for source, batch in by_source.items():
            if run.dry_run:
                known = self._store.logged(source, [e.event_id for e in batch])
                _add(run.counts, "events", "would_create", sum(e.event_id not in known for e in batch))
                continue
            new = set(self._store.record_events(batch))
            fresh = [e for e in batch if e.event_id in new]
            sent = self._ingest.publish_many(fresh)
            self._store.mark_queued(source, [e.event_id for e in sent])
            _add(run.counts, "events", "created", len(fresh))
            _add(run.counts, "events", "already_logged", len(batch) - len(fresh))

    # ------------------------------------------------------------ router → Moodle

    def _moodle_users(self, run: Run, meter: Meter) -> bool:
        """The managed accounts, 100 a call, then the students never given one."""
        if self._moodle is None:
            return True
        provisioner = Provisioner(MeteredMoodle(self._moodle(), meter), policy=self._policy)
        if run.checkpoint.get("pass", "managed") == "managed":
            page = self._store.managed(str(run.checkpoint.get("after", "")), USERS_PAGE)
            if page:
                self._compare_users(run, provisioner, page)
                run.checkpoint = {"pass": "managed", "after": page[-1].student}
            if len(page) == USERS_PAGE:
                return False
            run.checkpoint = {"pass": "undelivered", "after": ""}
        students = self._store.undelivered_students(str(run.checkpoint.get("after", "")), 1000)
        for student in students:
            self._repair(run, "missing_user", "user", student)
        if students:
            run.checkpoint = {"pass": "undelivered", "after": students[-1]}
        return len(students) < 1000

    def _compare_users(self, run: Run, provisioner: Provisioner, page: list[Managed]) -> None:
        found = {int(u["id"]): u for u in provisioner.users("id", [m.moodle_user_id for m in page])}
        _add(run.counts, "moodle", "users_checked", len(page))
        for managed in page:
            try:
                desired = MoodleUser.of(managed.data, deleted=managed.deleted, mapping=self._mapping)
            except CannotDeliver:
                continue  # its deliveries say why already
            existing = found.get(managed.moodle_user_id)
            link = Link(
                managed.moodle_user_id, "adopted" if managed.origin == "adopted" else "created", managed.matched_by
            )
            kind = _user_drift(existing, desired, provisioner.changes(existing, desired, link) if existing else {})
            if kind is not None:
                self._repair(run, kind, "user", managed.student)

    def _moodle_enrolments(self, run: Run, meter: Meter) -> bool:
        """A page of courses: each one's active enrolments against what the managed students' ask."""
        if self._moodle is None:
            return True
        moodle = MeteredMoodle(self._moodle(), meter)
        provisioner = Provisioner(moodle, policy=self._policy)
        field = self._mapping.course_idnumber
        courses = self._store.managed_courses(field, str(run.checkpoint.get("after", "")), COURSES_PAGE)
        wanted = self._store.wanted_enrolments(field, courses)
        for idnumber in courses:
            meter.time()
            course_id = self._course(provisioner, idnumber)
            if course_id is None:
                _add(run.counts, "drift", "course_missing", 1)
                continue
            options = [{"name": "onlyactive", "value": 1}, {"name": "userfields", "value": "id"}]
            active = {
                int(u["id"])
                for u in moodle.call("core_enrol_get_enrolled_users", {"courseid": course_id, "options": options})
            }
            _add(run.counts, "moodle", "courses_checked", 1)
            for enrolment in (w for w in wanted if w.course_idnumber == idnumber):
                try:
                    state = enrolment_state(enrolment.status, enrolment.deleted, self._mapping)
                except CannotDeliver:
                    continue
                is_active = enrolment.moodle_user_id in active
                if state == "active" and not is_active:
                    self._repair(run, "enrolment_missing", "enrolment", enrolment.enrolment)
                elif state != "active" and is_active:
                    self._repair(run, "enrolment_still_active", "enrolment", enrolment.enrolment)
            run.checkpoint = {"after": idnumber}
        return len(courses) < COURSES_PAGE

    def _course(self, provisioner: Provisioner, idnumber: str) -> int | None:
        course_id = self._deliveries.course_id(idnumber)
        if course_id is None:
            course_id = provisioner.course_id(idnumber)
            if course_id is not None:
                self._deliveries.remember_course(idnumber, course_id)
        return course_id

    def _repair(self, run: Run, kind: str, action: str, target: str) -> None:
        """A drift found: counted, and (unless a dry run) a delivery that makes Moodle match again."""
        _add(run.counts, "drift", kind, 1)
        if run.dry_run:
            return
        made = self._store.add_delivery("moodle", action, target)
        if made is not None:
            self._send([made])
            _add(run.counts, "repairs", kind, 1)

    # ------------------------------------------------------------ Moodle → Zoho

    def _grades(self, run: Run, meter: Meter) -> bool:
        """A page of courses: each one's grades of managed students against Zoho's ``BTEC_Grades``."""
        if self._moodle is None or self._zoho is None or not self._grades_to_zoho:
            return True
        moodle = MeteredMoodle(self._moodle(), meter)
        provisioner = Provisioner(moodle, policy=self._policy)
        courses = self._store.managed_courses(self._mapping.course_idnumber, str(run.checkpoint.get("after", "")), 5)
        for idnumber in courses:
            meter.time()
            course_id = self._course(provisioner, idnumber)
            if course_id is not None:
                self._course_grades(run, meter, moodle, idnumber, course_id)
            run.checkpoint = {"after": idnumber}
        return len(courses) < 5

    def _course_grades(self, run: Run, meter: Meter, moodle: MeteredMoodle, idnumber: str, course_id: int) -> None:
        report = moodle.call("gradereport_user_get_grade_items", {"courseid": course_id}) or {}
        graded = [(user, item) for user in report.get("usergrades") or [] for item in user.get("gradeitems") or []]
        managed = self._store.managed_users(sorted({int(u["userid"]) for u, _ in graded}))
        in_moodle = {
            f"{int(user['userid'])}-{int(item['id'])}": (user, item)
            for user, item in graded
            if int(user["userid"]) in managed and item.get("graderaw") is not None
        }
        _add(run.counts, "moodle", "grades_checked", len(in_moodle))
        if not in_moodle:
            return
        in_zoho = self._zoho_grades(meter, idnumber)
        events = []
        for key, (user, item) in in_moodle.items():
            held = in_zoho.get(key)
            raw = float(item["graderaw"])
            if held is not None and held != "missing" and math.isclose(float(held), raw, abs_tol=1e-5):
                continue
            kind = "grade_missing_in_zoho" if held is None else "grade_differs_in_zoho"
            _add(run.counts, "drift", kind, 1)
            events.append(grade_event(int(user["userid"]), course_id, item))
            if not run.dry_run:
                _add(run.counts, "repairs", kind, 1)
        self._enter(run, events)

    def _zoho_grades(self, meter: Meter, idnumber: str) -> dict[str, Any]:
        """Zoho's ``BTEC_Grades`` of a course: grade key → final grade ("missing" when it has none)."""
        m = self._mapping
        found: dict[str, Any] = {}
        after = "0"
        while True:
            escaped = idnumber.replace("'", "\\'")
            query = (
                f"select {m.grade_key}, {m.grade_value} from BTEC_Grades "
                f"where {m.grade_course} = '{escaped}' and id > {int(after)} order by id asc limit {COQL_LIMIT}"
            )
            meter.zoho(coql_credits(COQL_LIMIT))
            rows = self._zoho().coql(query) if self._zoho else []
            for row in rows:
                value = row.get(m.grade_value)
                found[str(row.get(m.grade_key))] = value if value is not None else "missing"
            if len(rows) < COQL_LIMIT:
                return found
            after = str(rows[-1]["id"])


def _user_drift(existing: dict[str, Any] | None, desired: MoodleUser, changes: dict[str, Any]) -> str | None:
    """What is wrong with a managed account, if anything."""
    if existing is None:
        return None if desired.suspended else "missing_user"
    if desired.suspended and not existing.get("suspended"):
        return "user_not_suspended"
    if not desired.suspended and existing.get("suspended"):
        return "user_suspended_by_hand"
    return "user_fields" if {k for k in changes if k != "suspended"} else None


def _add(counts: dict[str, Any], group: str, key: str, value: int) -> None:
    if value:
        section = counts.setdefault(group, {})
        section[key] = section.get(key, 0) + value


def _failure_row(module: Module, failure: dict[str, Any], run_id: int) -> dict[str, Any] | None:
    """What is kept of a failed webhook of Zoho's report: which record, which webhook, why, when."""
    entity = failure.get("entity_details") or failure.get("record") or {}
    record_id = entity.get("id") if isinstance(entity, dict) else None
    if not record_id:
        return None
    found = failure.get("webhook")
    webhook: dict[str, Any] = found if isinstance(found, dict) else {}
    failed_at = failure.get("failed_time") or failure.get("executed_time")
    key = f"{failure.get('id') or ''}:{webhook.get('id', '')}:{record_id}:{failed_at}"
    return {
        "failure_key": key,
        "module": module,
        "record_id": str(record_id),
        "webhook": str(webhook.get("name", "")) or None,
        "reason": str(failure.get("failure_reason") or failure.get("reason") or "")[:500] or None,
        "failed_at": failed_at,
        "run_id": run_id,
    }


def zoho_event(module: Module, record: dict[str, Any]) -> EventMessage:
    """A Zoho record the reconciliation read, as an event: its id is the module, the record, its
    ``Modified_Time`` and a digest of its fields, so reading it again is a duplicate, and any other
    change is a new event, even one made within the same second (Zoho's times are to the second)."""
    modified = str(record["Modified_Time"])
    digest = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return EventMessage(
        source="zoho",
        module=module,
        event_id=f"zoho-reconcile-{module}-{record['id']}-{modified}-{digest}",
        event_type="update",
        record_id=str(record["id"]),
        occurred_at=datetime.fromisoformat(modified),
        payload=record,
        facts=ZohoRecord(fields=record),
        auth_method="reconciliation",
    )


def grade_event(user: int, course: int, item: dict[str, Any]) -> EventMessage:
    """A Moodle grade the reconciliation found missing in Zoho, as the plugin would have sent it."""
    graded = item.get("gradedategraded")
    when = datetime.fromtimestamp(int(graded), UTC) if graded else datetime.now(UTC).replace(microsecond=0)
    letter = str(item.get("lettergradeformatted") or "").strip()
    grade = MoodleGrade(
        itemid=int(item["id"]),
        finalgrade=float(item["graderaw"]),
        grade_letter=letter if letter not in ("", "-") else None,
        scaleid=int(item["scaleid"]) if item.get("scaleid") else None,
    )
    payload = {
        "eventname": "\\" + USER_GRADED,
        "relateduserid": user,
        "courseid": course,
        "timecreated": int(when.timestamp()),
        "other": {"itemid": grade.itemid, "finalgrade": grade.finalgrade},
        "reconciled": True,
    }
    return EventMessage(
        source="moodle",
        module="grades",
        event_id=f"moodle-reconcile-grade-{user}-{grade.itemid}-{int(when.timestamp())}",
        event_type="update",
        record_id=f"{user}:{course}",
        occurred_at=when,
        payload=payload,
        facts=MoodleFacts(event_name=USER_GRADED, student=user, actor=None, course=course, grade=grade),
        auth_method="reconciliation",
    )


def build_reconciler(settings: Settings | None = None) -> Reconciler:
    """Wire the reconciliation from the container's settings."""
    from event_router.core.aws import sqs_client  # noqa: PLC0415
    from event_router.deliver.moodle.client import moodle_client  # noqa: PLC0415 - the Moodle connector's
    from event_router.deliver.moodle.rules import account_policy  # noqa: PLC0415
    from event_router.deliver.outbox import DeliveryPublisher  # noqa: PLC0415
    from event_router.deliver.zoho.client import zoho_client  # noqa: PLC0415
    from event_router.queues import SqsPublisher  # noqa: PLC0415

    settings = settings or load_settings()
    connection = PreparedConnection(connection_params(settings, "reconcile"), settings.db_idle_ping_seconds)
    sqs = sqs_client(settings)
    queue = settings.reconcile_queue_url

    def continue_later(run_id: int, dry_run: bool) -> None:
        if queue:
            sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"run_id": run_id, "dry_run": dry_run}))

    return Reconciler(
        ReconcileStore(connection),
        DeliveryStore(connection),
        zoho_client(settings, connection) if settings.zoho_configured() else None,
        moodle_client(settings) if settings.moodle_url else None,
        SqsPublisher(sqs, settings.queue_urls()),
        DeliveryPublisher(settings, sqs).send,
        field_mapping(settings),
        policy=account_policy(settings),
        budgets=Budgets(settings.reconcile_zoho_credits, settings.reconcile_moodle_calls),
        continue_later=continue_later,
        grades_to_zoho=bool(settings.zoho_delivery_queue_url),
    )
