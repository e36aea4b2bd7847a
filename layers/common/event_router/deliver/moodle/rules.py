"""Provisioning rules (docs/connect-moodle.md): a Zoho student becomes a Moodle user, a Zoho enrolment a
manual enrolment in the course whose ``idnumber`` it names, and the router changes only the Moodle
accounts it **manages**.

- **Managed**: an account the router created, or adopted. The router's own record of it is a
  ``Link`` (``moodle_accounts``); ``Moodle_User_ID`` from Zoho is never a target.
- **Adopted**: an existing account found by the student's ``idnumber``, username or e-mail, and
  only when it is a plain learner account: not a site administrator, no role but student in any
  context, an authentication method the college allows (``AccountPolicy``). Adopted accounts keep
  the e-mail (and username) Moodle holds unless the college opts in to overwriting it.
- **Conflict**: anything else (a teacher's or an administrator's account, two accounts matching, an
  account another student has, one the router cannot check): Moodle is left as it is and the
  delivery ends ``conflict`` with the reason. Before any change to a managed account, it is checked
  again: a student made a teacher since stops being changed.

Every rule converges Moodle to what the mirror holds, so a delivery done twice does no harm: only
the fields that differ are updated, a Zoho delete suspends the managed account and never deletes it,
an enrolment is set to the state the Zoho record asks for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from event_router.deliver.moodle.client import ACCOUNT_FACTS, Moodle, MoodleError
from event_router.mapping import FieldMapping
from event_router.settings import Settings
from event_router.store.deliveries import Link

EnrolmentState = Literal["active", "suspended", "absent"]


def account_policy(settings: Settings) -> AccountPolicy:
    """What the college lets the router do with existing accounts (``MOODLE_ADOPTABLE_AUTH``,
    ``MOODLE_ADOPTED_EMAIL``)."""
    return AccountPolicy(settings.moodle_adoptable_auth or ("manual",), settings.moodle_adopted_email)


class CannotDeliver(Exception):
    """The record cannot become what the destination needs (a field is missing or unusable)."""


@dataclass(frozen=True)
class MoodleUser:
    """The Moodle user a Zoho student should be."""

    idnumber: str | None
    email: str | None
    firstname: str
    lastname: str
    suspended: bool

    @property
    def username(self) -> str | None:
        return self.email.lower() if self.email else None

    def fields(self) -> dict[str, Any]:
        """The fields Moodle keeps that the router manages."""
        return {
            "idnumber": self.idnumber or "",
            "email": self.email,
            "username": self.username,
            "firstname": self.firstname,
            "lastname": self.lastname,
            "suspended": self.suspended,
        }

    @classmethod
    def of(cls, record: dict[str, Any], deleted: bool, mapping: FieldMapping) -> MoodleUser:
        """The user a student record maps to (docs/connect-moodle.md's default mapping, or the college's)."""

        def text(name: str) -> str | None:
            value = record.get(name)
            return str(value).strip() or None if value is not None else None

        first, last = text(mapping.first_name), text(mapping.last_name)
        if not (first and last):
            full = text(mapping.name)
            if full:
                given, _, family = full.rpartition(" ")
                if not given:  # a single name: Moodle needs both, so the family name is "-"
                    given, family = family, "-"
                first, last = first or given, last or family
        if not (first and last):
            raise CannotDeliver(f"{mapping.name} (or {mapping.first_name} and {mapping.last_name}) is required")
        return cls(text(mapping.student_number), text(mapping.email), first, last, deleted)


class Conflict(Exception):
    """The account is not one the router may change: Moodle is left as it is, for a person to decide."""


@dataclass(frozen=True)
class AccountPolicy:
    """What the college allows the router to do with existing accounts."""

    adoptable_auth: tuple[str, ...] = ("manual",)  # authentication methods of accounts it may adopt
    adopted_email: Literal["keep", "overwrite"] = "keep"  # an adopted account's e-mail: Moodle's, or Zoho's
    student_role: str = "student"  # the only role a managed account may hold


@dataclass(frozen=True)
class AccountFacts:
    """What the Moodle plugin's ``local_eventrouter_get_account_facts`` says of an account."""

    id: int
    siteadmin: bool
    auth: str
    roles: tuple[str, ...]

    @classmethod
    def of(cls, answer: dict[str, Any]) -> AccountFacts:
        return cls(
            int(answer["id"]),
            bool(answer.get("siteadmin")),
            str(answer.get("auth", "")),
            tuple(answer.get("roles") or ()),
        )


def refusal(facts: AccountFacts, policy: AccountPolicy, *, adopting: bool) -> str | None:
    """Why the router may not change this account (None: it may). Adopting asks more of it: the
    authentication method too (one the router created has the method the college gave it)."""
    if facts.siteadmin:
        return "is a site administrator"
    others = sorted(set(facts.roles) - {policy.student_role})
    if others:
        return f"holds the role{'s' if len(others) > 1 else ''} {', '.join(others)}"
    if adopting and facts.auth not in policy.adoptable_auth:
        allowed = ", ".join(policy.adoptable_auth)
        return f"signs in with {facts.auth!r}, not one the college lets the router adopt ({allowed})"
    return None


@dataclass(frozen=True)
class UserResult:
    """What ``ensure_user`` did: the account's id (None when there is none to have), what was done, and
    the link to keep (None: none)."""

    user_id: int | None
    action: str  # created | adopted | updated | unchanged | suspended | absent
    link: Link | None


class Provisioner:
    """Moodle users and manual enrolments, converged to what the mirror holds, on managed accounts only."""

    def __init__(
        self,
        moodle: Moodle,
        student_role_id: int = 5,
        auth: str = "manual",
        policy: AccountPolicy | None = None,
    ) -> None:
        self._moodle = moodle
        self._student_role_id = student_role_id
        self._auth = auth
        self._policy = policy or AccountPolicy()

    # ------------------------------------------------------------ users

    def users(self, field: str, values: list[Any]) -> list[dict[str, Any]]:
        """Moodle's users whose ``field`` is one of ``values`` (Moodle compares exactly)."""
        if not values:
            return []
        return [dict(u) for u in self._moodle.call("core_user_get_users_by_field", {"field": field, "values": values})]

    def facts(self, user_ids: list[int]) -> dict[int, AccountFacts]:
        """The Moodle plugin's facts of each account: ``Conflict`` when it cannot be asked."""
        try:
            answer = self._moodle.call(ACCOUNT_FACTS, {"userids": user_ids})
        except MoodleError as error:
            if error.code in ("accessexception", "invalidrecord", "servicenotavailable"):
                raise Conflict(
                    f"the router cannot check the account ({error.code}): install the local_eventrouter plugin "
                    f"and add {ACCOUNT_FACTS} to the router's service"
                ) from None
            raise
        return {f.id: f for f in (AccountFacts.of(a) for a in answer or [])}

    def candidates(self, desired: MoodleUser) -> dict[int, tuple[dict[str, Any], str]]:
        """Existing accounts that could be the student's: by ``idnumber``, the username the router would
        give it, the e-mail (as given and in lower case: Moodle compares e-mails case-sensitively)."""
        found: dict[int, tuple[dict[str, Any], str]] = {}
        emails = list(dict.fromkeys(e for e in (desired.email, desired.username) if e))
        for field, values in (
            ("idnumber", [desired.idnumber] if desired.idnumber else []),
            ("username", [desired.username] if desired.username else []),
            ("email", emails),
        ):
            for user in self.users(field, values):
                found.setdefault(int(user["id"]), (user, field))
        return found

    def ensure_user(
        self, desired: MoodleUser, link: Link | None, claim: Callable[[Link], bool] = lambda _: True
    ) -> UserResult:
        """Make the student's managed Moodle account match ``desired``. Without a link, adopt an
        account found by the safe rules, or create one; ``claim`` records the link and says False
        when the account is already another student's. ``Conflict`` when it may not be changed."""
        if link is not None:
            found = self.users("id", [link.moodle_user_id])
            if found:
                return self._converge(found[0], desired, link, adopted=False)
            link = None  # deleted in Moodle: find or make the student another
        if desired.suspended:
            return UserResult(None, "absent", None)  # never adopt an account only to suspend it
        matches = self.candidates(desired)
        if not matches:
            return self._create(desired, claim)
        if len(matches) > 1:
            how = ", ".join(f"{m[1]} {user_id}" for user_id, m in sorted(matches.items()))
            raise Conflict(f"several Moodle accounts match the student ({how})")
        [(user_id, (existing, matched_by))] = matches.items()
        label = f"Moodle account {user_id} (same {matched_by})"
        self._check(user_id, adopting=True, label=label)
        adopted = Link(user_id, "adopted", matched_by)
        if not claim(adopted):
            raise Conflict(f"{label} is already another student's")
        return self._converge(existing, desired, adopted, adopted=True)

    def _check(self, user_id: int, *, adopting: bool, label: str) -> None:
        facts = self.facts([user_id]).get(user_id)
        if facts is None:
            raise Conflict(f"{label} is not there to check")
        reason = refusal(facts, self._policy, adopting=adopting)
        if reason is not None:
            raise Conflict(f"{label} {reason}")

    def _converge(self, existing: dict[str, Any], desired: MoodleUser, link: Link, *, adopted: bool) -> UserResult:
        user_id = int(existing["id"])
        changed = self.changes(existing, desired, link)
        if not changed:
            return UserResult(user_id, "adopted" if adopted else "unchanged", link)
        if not adopted:  # a managed account may have become a teacher's, or an administrator's, since
            self._check(user_id, adopting=False, label=f"the student's Moodle account {user_id}")
        answer = self._moodle.call("core_user_update_users", {"users": [{"id": user_id, **changed}]})
        warnings = (answer or {}).get("warnings") or []
        if warnings:
            warning = warnings[0]
            raise MoodleError("data", str(warning.get("warningcode", "warning")), str(warning.get("message", "")))
        if adopted:
            return UserResult(user_id, "adopted", link)
        action = "suspended" if changed.keys() == {"suspended"} and desired.suspended else "updated"
        return UserResult(user_id, action, link)

    def changes(self, existing: dict[str, Any], desired: MoodleUser, link: Link) -> dict[str, Any]:
        """The fields of a managed account that differ from what the router wants of it."""
        wanted = desired.fields()
        if str(existing.get("username", "")) != str(existing.get("email", "")).lower():
            del wanted["username"]  # a username the college chose is kept; one that is the e-mail follows it
        if link.origin == "adopted" and self._policy.adopted_email == "keep":
            wanted.pop("email", None)  # an adopted account keeps the address (and the sign-in) Moodle has
            wanted.pop("username", None)
        return {
            field: value
            for field, value in wanted.items()
            if value is not None and not _same(field, existing.get(field), value)
        }

    def _create(self, desired: MoodleUser, claim: Callable[[Link], bool]) -> UserResult:
        if not desired.email:
            raise CannotDeliver("an e-mail address is required to create a Moodle user")
        user: dict[str, Any] = {k: v for k, v in desired.fields().items() if k != "suspended" and v}
        user["auth"] = self._auth
        if self._auth == "manual":
            user["createpassword"] = True  # Moodle e-mails the student a password
        [created] = self._moodle.call("core_user_create_users", {"users": [user]})
        made = Link(int(created["id"]), "created")
        claim(made)  # a new account is no one else's
        return UserResult(made.moodle_user_id, "created", made)

    # ------------------------------------------------------------ courses and enrolments

    def course_id(self, idnumber: str) -> int | None:
        """The id of the course whose ``idnumber`` is ``idnumber``; None when there is none."""
        answer = self._moodle.call("core_course_get_courses_by_field", {"field": "idnumber", "value": idnumber})
        courses = (answer or {}).get("courses") or []
        return int(courses[0]["id"]) if courses else None

    def set_enrolment(self, user_id: int, course_id: int, state: EnrolmentState) -> None:
        """Enrol as student (``active``), keep enrolled but suspended, or unenrol (``absent``)."""
        if state == "absent":
            self._moodle.call(
                "enrol_manual_unenrol_users", {"enrolments": [{"userid": user_id, "courseid": course_id}]}
            )
            return
        enrolment = {
            "roleid": self._student_role_id,
            "userid": user_id,
            "courseid": course_id,
            "suspend": state == "suspended",
        }
        self._moodle.call("enrol_manual_enrol_users", {"enrolments": [enrolment]})


def _same(field: str, current: Any, wanted: Any) -> bool:
    if field == "suspended":
        return bool(current) == bool(wanted)
    if field in ("email", "username"):
        return str(current or "").lower() == str(wanted).lower()
    return str(current or "") == str(wanted)


def enrolment_state(status: str | None, deleted: bool, mapping: FieldMapping) -> EnrolmentState:
    """What a Zoho enrolment's status asks of Moodle."""
    if deleted:
        return "absent"
    if status in mapping.active_statuses:
        return "active"
    if status in mapping.suspended_statuses:
        return "suspended"
    known = ", ".join((*mapping.active_statuses, *mapping.suspended_statuses))
    raise CannotDeliver(f"enrolment status {status!r} is none of {known}")
