"""The Moodle connector and the provisioning rules against a Moodle: the stand-in always, and the
real Moodle 4.5.6 when ``MOODLE_URL`` is set. The same assertions hold for both; where they
disagreed, the stand-in was changed."""

from __future__ import annotations

import pytest

from event_router.deliver.moodle import FUNCTIONS, MoodleError, MoodleRestClient
from event_router.deliver.provision import CannotDeliver, MoodleUser, Provisioner
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


def test_a_new_student_becomes_one_user_with_the_mapped_fields(moodle_site: MoodleSite, unique: str) -> None:
    moodle = client(moodle_site)
    provisioner = Provisioner(moodle)

    user_id, action = provisioner.ensure_user(student(unique), known_id=None)

    assert action == "created"
    [user] = moodle.call("core_user_get_users_by_field", {"field": "idnumber", "values": [f"BTEC-{unique}"]})
    assert user["id"] == user_id
    assert (user["username"], user["email"]) == (f"ada.{unique}@students.example.ac.uk",) * 2
    assert (user["firstname"], user["lastname"], user["suspended"]) == ("Ada", "Example", False)


def test_provisioning_twice_finds_the_user_instead_of_creating_another(moodle_site: MoodleSite, unique: str) -> None:
    moodle = client(moodle_site)
    provisioner = Provisioner(moodle)
    first, _ = provisioner.ensure_user(student(unique), known_id=None)
    calls_before = moodle.calls

    again, action = provisioner.ensure_user(student(unique), known_id=None)

    assert (again, action) == (first, "unchanged")
    assert moodle.calls - calls_before == 1  # one lookup, by idnumber, and nothing else
    found = moodle.call(
        "core_user_get_users_by_field", {"field": "email", "values": [f"ada.{unique}@students.example.ac.uk"]}
    )
    assert [u["id"] for u in found] == [first]


def test_a_user_without_the_idnumber_is_found_by_username_and_given_it(moodle_site: MoodleSite, unique: str) -> None:
    moodle = client(moodle_site)
    provisioner = Provisioner(moodle)
    created, _ = provisioner.ensure_user(student(unique, idnumber=None), known_id=None)

    found, action = provisioner.ensure_user(student(unique), known_id=None)

    assert (found, action) == (created, "updated")
    [user] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [created]})
    assert user["idnumber"] == f"BTEC-{unique}"


def test_an_account_the_college_made_is_found_by_email_in_any_case_and_keeps_its_username(
    moodle_site: MoodleSite, unique: str
) -> None:
    moodle = client(moodle_site)
    [made] = moodle.call(
        "core_user_create_users",
        {
            "users": [
                {
                    "username": f"ada{unique}",
                    "email": f"ada.{unique}@students.example.ac.uk",
                    "firstname": "Ada",
                    "lastname": "Example",
                    "createpassword": True,
                }
            ]
        },
    )

    found, action = Provisioner(moodle).ensure_user(
        student(unique, email=f"Ada.{unique}@Students.Example.ac.uk"), known_id=None
    )

    assert (found, action) == (made["id"], "updated")  # given its idnumber
    [user] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [made["id"]]})
    assert (user["username"], user["idnumber"]) == (f"ada{unique}", f"BTEC-{unique}")


def test_a_username_that_is_the_email_follows_a_new_email(moodle_site: MoodleSite, unique: str) -> None:
    moodle = client(moodle_site)
    provisioner = Provisioner(moodle)
    user_id, _ = provisioner.ensure_user(student(unique), known_id=None)

    provisioner.ensure_user(student(unique, email=f"ada.lovelace.{unique}@students.example.ac.uk"), known_id=user_id)

    [user] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [user_id]})
    assert (user["username"], user["email"]) == (f"ada.lovelace.{unique}@students.example.ac.uk",) * 2


def test_an_update_changes_only_the_fields_that_differ(moodle_site: MoodleSite, unique: str) -> None:
    moodle = client(moodle_site)
    provisioner = Provisioner(moodle)
    user_id, _ = provisioner.ensure_user(student(unique), known_id=None)
    calls_before = moodle.calls

    same, action = provisioner.ensure_user(student(unique, lastname="Lovelace"), known_id=user_id)

    assert (same, action) == (user_id, "updated")
    assert moodle.calls - calls_before == 2  # a lookup by the stored id, one update
    [user] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [user_id]})
    assert (user["firstname"], user["lastname"]) == ("Ada", "Lovelace")


def test_a_deleted_student_is_suspended_never_deleted(moodle_site: MoodleSite, unique: str) -> None:
    moodle = client(moodle_site)
    provisioner = Provisioner(moodle)
    user_id, _ = provisioner.ensure_user(student(unique), known_id=None)

    same, action = provisioner.ensure_user(student(unique, suspended=True), known_id=user_id)

    assert (same, action) == (user_id, "suspended")
    [user] = moodle.call("core_user_get_users_by_field", {"field": "id", "values": [user_id]})
    assert user["suspended"] is True


def test_a_deleted_student_without_a_user_gets_none(moodle_site: MoodleSite, unique: str) -> None:
    assert Provisioner(client(moodle_site)).ensure_user(student(unique, suspended=True), known_id=None) == (
        None,
        "absent",
    )


def test_an_invalid_email_is_a_data_error_with_moodles_message(moodle_site: MoodleSite, unique: str) -> None:
    with pytest.raises(MoodleError) as refused:
        Provisioner(client(moodle_site)).ensure_user(student(unique, email="not-an-email"), known_id=None)

    assert (refused.value.kind, refused.value.code) == ("data", "invalidparameter")
    assert "Invalid parameter value detected" in str(refused.value)


def test_another_users_email_is_refused_on_update_as_a_data_error(moodle_site: MoodleSite, unique: str) -> None:
    provisioner = Provisioner(client(moodle_site))
    provisioner.ensure_user(student(f"{unique}a"), known_id=None)
    second, _ = provisioner.ensure_user(student(f"{unique}b"), known_id=None)

    with pytest.raises(MoodleError) as refused:
        provisioner.ensure_user(student(f"{unique}b", email=f"ada.{unique}a@students.example.ac.uk"), known_id=second)

    assert (refused.value.kind, refused.value.code) == ("data", "useremailduplicate")


def test_a_student_without_a_name_cannot_be_delivered() -> None:
    with pytest.raises(CannotDeliver):
        MoodleUser.of(
            {"Academic_Email": "a@b.example"},
            deleted=False,
            mapping=__import__("event_router.deliver.provision", fromlist=["FieldMapping"]).FieldMapping(),
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
    user_id, _ = provisioner.ensure_user(student(unique), known_id=None)
    assert user_id is not None

    found = provisioner.course_id(f"L3-IT-{unique}")
    provisioner.set_enrolment(user_id, course_id, "active")

    assert (found, moodle_site.enrolment(user_id, course_id)) == (course_id, "active")


def test_an_enrolment_is_active_then_suspended_then_gone(moodle_site: MoodleSite, unique: str) -> None:
    moodle = client(moodle_site)
    provisioner = Provisioner(moodle)
    user_id, _ = provisioner.ensure_user(student(unique), known_id=None)
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
    user_id, _ = provisioner.ensure_user(student(unique), known_id=None)
    assert user_id is not None

    with pytest.raises(MoodleError) as refused:
        provisioner.set_enrolment(user_id, 99_999_999, "active")

    assert refused.value.kind == "data"


def test_an_unreachable_moodle_is_transient() -> None:
    from tests.conftest import closed_port

    with pytest.raises(MoodleError) as refused:
        MoodleRestClient(f"http://127.0.0.1:{closed_port()}", "x", timeout=2).call("core_webservice_get_site_info")

    assert refused.value.kind == "transient"
