"""The Moodle connector and the provisioning rules against a Moodle: the stand-in always, and the
real Moodle 4.5.6 when ``MOODLE_URL`` is set. The same assertions hold for both; where they
disagreed, the stand-in was changed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from event_router.deliver.moodle.client import FUNCTIONS, MoodleError, MoodleRestClient
from event_router.deliver.moodle.rules import (
    AccountFacts,
    AccountPolicy,
    CannotDeliver,
    Conflict,
    MoodleUser,
    Provisioner,
)
from event_router.store.deliveries import Link
from tests.moodle_sites import MoodleSite


def client(site: MoodleSite, token: str | None = None) -> MoodleRestClient:
    return MoodleRestClient(site.url, token or site.token, timeout=30)


def student(unique: str, **changes: object) -> MoodleUser:
    fields: dict[str, object] = {
        "idnumber": f"BTEC-{unique}",
        "email": f"ada.{unique}@students.example.ac.uk",
        "firstname": "Ada",
        "lastname": "Example",
        "suspended": False,
    }
    return MoodleUser(**{**fields, **changes})  # type: ignore[arg-type]


def test_site_info_names_the_web_service_user_and_the_release(moodle_site: MoodleSite) -> None:
    info = client(moodle_site).call("core_webservice_get_site_info")

    assert isinstance(info["userid"], int)
    assert info["release"].startswith("4.5")
    assert {f["name"] for f in info["functions"]} == set(FUNCTIONS)  # exactly what the guide lists


def test_a_wrong_token_is_a_configuration_error(moodle_site: MoodleSite) -> None:
    with pytest.raises(MoodleError) as refused:
        client(moodle_site, token="0" * 32).call("core_webservice_get_site_info")

    assert (refused.value.kind, refused.value.code) == ("configuration", "invalidtoken")


def test_a_function_outside_the_service_is_a_configuration_error(moodle_site: MoodleSite) -> None:
    with pytest.raises(MoodleError) as refused:
        client(moodle_site).call("core_user_delete_users", {"userids": [999999]})

    assert (refused.value.kind, refused.value.code) == ("configuration", "accessexception")


class Links:
    """The router's record of the accounts it manages, in memory: what ``claim`` writes."""

    def __init__(self) -> None:
        self.by_student: dict[str, Link] = {}

    def claim(self, student: str) -> Callable[[Link], bool]:
        def claim(link: Link) -> bool:
            if any(o.moodle_user_id == link.moodle_user_id for s, o in self.by_student.items() if s != student):
                return False
            self.by_student[student] = link
            return True

        return claim


def test_a_new_student_becomes_one_user_with_the_mapped_fields(moodle_site: MoodleSite, unique: str) -> None:
    moodle = client(moodle_site)

    result = Provisioner(moodle).ensure_user(student(unique), None)

    assert (result.action, result.link) == ("created", Link(result.user_id or 0, "created"))
    [user] = moodle.call("core_user_get_users_by_field", {"field": "idnumber", "values": [f"BTEC-{unique}"]})
    assert user["id"] == result.user_id
    assert (user["username"], user["email"]) == (f"ada.{unique}@students.example.ac.uk",) * 2
    assert (user["firstname"], user["lastname"], user["suspended"]) == ("Ada", "Example", False)


def test_provisioning_twice_finds_the_managed_user_by_its_link(moodle_site: MoodleSite, unique: str) -> None:
    moodle = client(moodle_site)
    provisioner = Provisioner(moodle)
    first = provisioner.ensure_user(student(unique), None)
    calls_before = moodle.calls

    again = provisioner.ensure_user(student(unique), first.link)

    assert (again.user_id, again.action) == (first.user_id, "unchanged")
    assert moodle.calls - calls_before == 1  # one lookup, by the account's id, and nothing else


def test_a_plain_learner_account_already_in_moodle_is_adopted_not_duplicated(
    moodle_site: MoodleSite, unique: str
) -> None:
    moodle = client(moodle_site)
    made = moodle_site.add_user(f"ada{unique}", f"ada.{unique}@students.example.ac.uk")  # the college's import

    result = Provisioner(moodle).ensure_user(student(unique, email=f"Ada.{unique}@Students.Example.ac.uk"), None)

    assert (result.user_id, result.action) == (made, "adopted")
    assert result.link == Link(made, "adopted", "email")
    [user] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [made]})
    # given the router's fields, but the username the college chose and the e-mail Moodle holds are kept
    assert (user["username"], user["idnumber"]) == (f"ada{unique}", f"BTEC-{unique}")
    assert user["email"] == f"ada.{unique}@students.example.ac.uk"
    assert (user["firstname"], user["lastname"]) == ("Ada", "Example")


def test_an_adopted_account_takes_zohos_email_only_where_the_college_opts_in(
    moodle_site: MoodleSite, unique: str
) -> None:
    moodle = client(moodle_site)
    made = moodle_site.add_user(f"ada{unique}", f"ada.{unique}@old.example.ac.uk", idnumber=f"BTEC-{unique}")

    kept = Provisioner(moodle).ensure_user(student(unique), None)
    overwrite = Provisioner(moodle, policy=AccountPolicy(adopted_email="overwrite"))
    taken = overwrite.ensure_user(student(unique), kept.link)

    assert (kept.user_id, kept.link) == (made, Link(made, "adopted", "idnumber"))
    assert taken.action == "updated"
    [user] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [made]})
    assert user["email"] == f"ada.{unique}@students.example.ac.uk"


def test_a_teachers_account_is_never_adopted_and_nothing_in_moodle_changes(
    moodle_site: MoodleSite, unique: str
) -> None:
    moodle = client(moodle_site)
    teacher = moodle_site.add_user(f"teacher{unique}", f"ada.{unique}@students.example.ac.uk")
    moodle_site.make_teacher(teacher, moodle_site.create_course(f"T-{unique}"))
    [before] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [teacher]})

    with pytest.raises(Conflict) as conflict:
        Provisioner(moodle).ensure_user(student(unique), None)

    assert f"Moodle account {teacher} (same email) holds the role editingteacher" == str(conflict.value)
    [after] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [teacher]})
    assert after == before


def test_the_site_administrators_account_is_never_adopted(moodle_site: MoodleSite, unique: str) -> None:
    admin = moodle_site.admin()

    with pytest.raises(Conflict) as conflict:
        Provisioner(client(moodle_site)).ensure_user(student(unique, email=admin["email"]), None)

    assert str(conflict.value).endswith("is a site administrator")


def test_an_account_signing_in_a_way_the_college_did_not_allow_is_not_adopted(
    moodle_site: MoodleSite, unique: str
) -> None:
    moodle_site.add_user(f"ada{unique}", f"ada.{unique}@students.example.ac.uk", auth="nologin")

    with pytest.raises(Conflict) as conflict:
        Provisioner(client(moodle_site)).ensure_user(student(unique), None)

    assert "signs in with 'nologin'" in str(conflict.value)


def test_two_accounts_matching_one_student_is_a_conflict(moodle_site: MoodleSite, unique: str) -> None:
    moodle_site.add_user(f"one{unique}", f"one.{unique}@example.ac.uk", idnumber=f"BTEC-{unique}")
    moodle_site.add_user(f"two{unique}", f"ada.{unique}@students.example.ac.uk")

    with pytest.raises(Conflict) as conflict:
        Provisioner(client(moodle_site)).ensure_user(student(unique), None)

    assert str(conflict.value).startswith("several Moodle accounts match the student")


def test_an_account_another_student_has_is_not_adopted_twice(moodle_site: MoodleSite, unique: str) -> None:
    links = Links()
    made = moodle_site.add_user(f"ada{unique}", f"ada.{unique}@students.example.ac.uk")
    provisioner = Provisioner(client(moodle_site))
    provisioner.ensure_user(student(unique), None, links.claim("first"))

    with pytest.raises(Conflict) as conflict:
        provisioner.ensure_user(student(unique, idnumber=f"OTHER-{unique}"), None, links.claim("second"))

    assert str(conflict.value) == f"Moodle account {made} (same email) is already another student's"


def test_a_managed_account_made_a_teacher_since_is_no_longer_changed(moodle_site: MoodleSite, unique: str) -> None:
    moodle = client(moodle_site)
    provisioner = Provisioner(moodle)
    created = provisioner.ensure_user(student(unique), None)
    assert created.user_id is not None
    moodle_site.make_teacher(created.user_id, moodle_site.create_course(f"T-{unique}"))

    with pytest.raises(Conflict):
        provisioner.ensure_user(student(unique, email=f"new.{unique}@example.ac.uk"), created.link)
    with pytest.raises(Conflict):
        provisioner.ensure_user(student(unique, suspended=True), created.link)  # a Zoho delete

    [user] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [created.user_id]})
    assert (user["email"], user["suspended"]) == (f"ada.{unique}@students.example.ac.uk", False)


def test_the_account_facts_say_admin_roles_and_sign_in(moodle_site: MoodleSite, unique: str) -> None:
    moodle = client(moodle_site)
    course = moodle_site.create_course(f"F-{unique}")
    learner = moodle_site.add_user(f"learner{unique}", f"learner.{unique}@example.ac.uk")
    moodle_site.enrol_by_hand(learner, course)
    teacher = moodle_site.add_user(f"teacher{unique}", f"teacher.{unique}@example.ac.uk", auth="nologin")
    moodle_site.make_teacher(teacher, course)
    admin = int(moodle_site.admin()["id"])

    facts = Provisioner(moodle).facts([learner, teacher, admin, 999_999_999])

    assert set(facts) == {learner, teacher, admin}  # an account that does not exist is not there
    assert facts[learner] == AccountFacts(learner, False, "manual", ("student",))
    assert (facts[teacher].auth, facts[teacher].roles) == ("nologin", ("editingteacher",))
    assert facts[admin].siteadmin is True


def test_a_managed_account_gone_from_moodle_is_made_again(moodle_site: MoodleSite, unique: str) -> None:
    provisioner = Provisioner(client(moodle_site))

    again = provisioner.ensure_user(student(unique), Link(999_999_998, "created"))

    assert again.action == "created"
    assert again.user_id != 999_999_998


def test_a_username_that_is_the_email_follows_a_new_email(moodle_site: MoodleSite, unique: str) -> None:
    moodle = client(moodle_site)
    provisioner = Provisioner(moodle)
    created = provisioner.ensure_user(student(unique), None)

    provisioner.ensure_user(student(unique, email=f"ada.lovelace.{unique}@students.example.ac.uk"), created.link)

    [user] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [created.user_id]})
    assert (user["username"], user["email"]) == (f"ada.lovelace.{unique}@students.example.ac.uk",) * 2


def test_an_update_changes_only_the_fields_that_differ(moodle_site: MoodleSite, unique: str) -> None:
    moodle = client(moodle_site)
    provisioner = Provisioner(moodle)
    created = provisioner.ensure_user(student(unique), None)
    calls_before = moodle.calls

    same = provisioner.ensure_user(student(unique, lastname="Lovelace"), created.link)

    assert (same.user_id, same.action) == (created.user_id, "updated")
    assert moodle.calls - calls_before == 3  # a lookup by the stored id, the account's facts, one update
    [user] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [created.user_id]})
    assert (user["firstname"], user["lastname"]) == ("Ada", "Lovelace")


def test_a_deleted_student_is_suspended_never_deleted(moodle_site: MoodleSite, unique: str) -> None:
    moodle = client(moodle_site)
    provisioner = Provisioner(moodle)
    created = provisioner.ensure_user(student(unique), None)

    same = provisioner.ensure_user(student(unique, suspended=True), created.link)

    assert (same.user_id, same.action) == (created.user_id, "suspended")
    [user] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [created.user_id]})
    assert user["suspended"] is True


def test_a_deleted_student_without_a_managed_account_changes_nothing(moodle_site: MoodleSite, unique: str) -> None:
    existing = moodle_site.add_user(f"ada{unique}", f"ada.{unique}@students.example.ac.uk")
    provisioner = Provisioner(client(moodle_site))

    result = provisioner.ensure_user(student(unique, suspended=True), None)

    assert (result.user_id, result.action, result.link) == (None, "absent", None)
    [user] = client(moodle_site).call("core_user_get_users_by_field", {"field": "id", "values": [existing]})
    assert user["suspended"] is False  # an account the router does not manage is never suspended


def test_an_invalid_email_is_a_data_error_with_moodles_message(moodle_site: MoodleSite, unique: str) -> None:
    with pytest.raises(MoodleError) as refused:
        Provisioner(client(moodle_site)).ensure_user(student(unique, email="not-an-email"), None)

    assert (refused.value.kind, refused.value.code) == ("data", "invalidparameter")
    assert "Invalid parameter value detected" in str(refused.value)


def test_another_users_email_is_refused_on_update_as_a_data_error(moodle_site: MoodleSite, unique: str) -> None:
    provisioner = Provisioner(client(moodle_site))
    provisioner.ensure_user(student(f"{unique}a"), None)
    second = provisioner.ensure_user(student(f"{unique}b"), None)

    with pytest.raises(MoodleError) as refused:
        provisioner.ensure_user(student(f"{unique}b", email=f"ada.{unique}a@students.example.ac.uk"), second.link)

    assert (refused.value.kind, refused.value.code) == ("data", "useremailduplicate")


def test_a_student_without_a_name_cannot_be_delivered() -> None:
    with pytest.raises(CannotDeliver):
        MoodleUser.of(
            {"Academic_Email": "a@b.example"},
            deleted=False,
            mapping=__import__("event_router.mapping", fromlist=["FieldMapping"]).FieldMapping(),
        )


def test_a_course_is_found_by_its_idnumber(moodle_site: MoodleSite, unique: str) -> None:
    course_id = moodle_site.create_course(f"L3-IT-{unique}")
    provisioner = Provisioner(client(moodle_site))

    assert provisioner.course_id(f"L3-IT-{unique}") == course_id
    assert provisioner.course_id(f"NO-SUCH-{unique}") is None


def test_a_hidden_course_is_found_and_enrolled_into(moodle_site: MoodleSite, unique: str) -> None:
    """Colleges hide a course while they set it up, and enrolments arrive before it opens."""
    course_id = moodle_site.create_course(f"L3-IT-{unique}", visible=False)
    provisioner = Provisioner(client(moodle_site))
    user_id = provisioner.ensure_user(student(unique), None).user_id
    assert user_id is not None

    found = provisioner.course_id(f"L3-IT-{unique}")
    provisioner.set_enrolment(user_id, course_id, "active")

    assert (found, moodle_site.enrolment(user_id, course_id)) == (course_id, "active")


def test_an_enrolment_is_active_then_suspended_then_gone(moodle_site: MoodleSite, unique: str) -> None:
    moodle = client(moodle_site)
    provisioner = Provisioner(moodle)
    user_id = provisioner.ensure_user(student(unique), None).user_id
    assert user_id is not None
    course_id = moodle_site.create_course(f"L3-IT-{unique}")

    provisioner.set_enrolment(user_id, course_id, "active")
    enrolled = moodle_site.enrolment(user_id, course_id)
    provisioner.set_enrolment(user_id, course_id, "active")  # again: no change, no error
    provisioner.set_enrolment(user_id, course_id, "suspended")
    suspended = moodle_site.enrolment(user_id, course_id)
    provisioner.set_enrolment(user_id, course_id, "absent")

    assert (enrolled, suspended, moodle_site.enrolment(user_id, course_id)) == ("active", "suspended", None)


def test_enrolling_in_a_course_that_does_not_exist_is_a_data_error(moodle_site: MoodleSite, unique: str) -> None:
    provisioner = Provisioner(client(moodle_site))
    user_id = provisioner.ensure_user(student(unique), None).user_id
    assert user_id is not None

    with pytest.raises(MoodleError) as refused:
        provisioner.set_enrolment(user_id, 99_999_999, "active")

    assert refused.value.kind == "data"


def test_an_unreachable_moodle_is_transient() -> None:
    from tests.conftest import closed_port

    with pytest.raises(MoodleError) as refused:
        MoodleRestClient(f"http://127.0.0.1:{closed_port()}", "x", timeout=2).call("core_webservice_get_site_info")

    assert refused.value.kind == "transient"
