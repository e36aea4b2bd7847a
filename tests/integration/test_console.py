"""The operators' console (docs/operate.md, "The console") without a browser: its pages, the keyset
paging, the four actions and their record, who may act, the CSRF checks, the sign-in and the
authorizer. tests/browser/ drives the same console through Chromium."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import Engine, text

from devstack.apigw import http_api_event
from event_router.operate.console.authorizer import Authorizer, build_authorizer, user_pool_issuer
from event_router.operate.console.session import LOGIN_COOKIE, SESSION_COOKIE, Caller, SignIn
from event_router.operate.migrate import make_engine, upgrade
from event_router.settings import Settings
from event_router.store.connection import PreparedConnection, connect_params
from event_router.store.console import ConsoleStore, EventFilter
from tests.conftest import Queues
from tests.integration.conftest import Invoke

LOCAL = "local-operator"


@pytest.fixture
def reconcile_queue(queues: Queues) -> str:
    return str(queues.sqs.create_queue(QueueName=f"{queues.dlq_url.rsplit('/', 1)[1]}-reconcile")["QueueUrl"])


@pytest.fixture
def console(load: Callable[..., Invoke], reconcile_queue: str) -> Invoke:
    """The console as ``make dev`` serves it: no sign-in, the local operator."""
    return load("ConsoleFunction", CONSOLE_LOGIN="none", RECONCILE_QUEUE_URL=reconcile_queue)


def get(invoke: Invoke, path: str, query: str = "", session: Session | None = None) -> dict[str, Any]:
    event = http_api_event("GET", path, b"", {"host": "console.test"}, query=query)
    return invoke(as_signed_in(event, session))


def post(
    invoke: Invoke, form: dict[str, str], headers: dict[str, str] | None = None, session: Session | None = None
) -> dict[str, Any]:
    sent = {"content-type": "application/x-www-form-urlencoded", "host": "console.test", **(headers or {})}
    event = http_api_event("POST", "/console/actions", urlencode(form).encode(), sent)
    return invoke(as_signed_in(event, session))


Session = tuple[str, bool, str]  # (user, operator, the session cookie's value)


def as_signed_in(event: dict[str, Any], session: Session | None) -> dict[str, Any]:
    """What API Gateway passes on once the console's authorizer let the request through."""
    if session is not None:
        user, operator, cookie = session
        event["cookies"] = [f"{SESSION_COOKIE}={cookie}"]
        event["requestContext"]["authorizer"] = {"lambda": {"user": user, "operator": operator}}
    return event


def csrf_of(page: dict[str, Any]) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page["body"])
    assert found, "the page has no action form"
    return found.group(1)


def log_event(db: Engine, event_id: str, status: str, module: str = "students", **columns: Any) -> int:
    payload = {"id": event_id, "Name": "Ada Example", "Modified_Time": "2026-11-25T09:00:00Z"}
    with db.begin() as connection:
        return int(
            connection.execute(
                text(
                    "INSERT INTO integration_events_log (event_id, source, module, event_type, record_id, payload,"
                    " status, error_message, received_at) VALUES (:e, 'zoho', :m, 'update', :e, CAST(:p AS jsonb),"
                    " :s, :err, coalesce(CAST(:at AS timestamptz), now())) RETURNING id"
                ),
                {
                    "e": event_id,
                    "m": module,
                    "p": json.dumps(payload),
                    "s": status,
                    "err": columns.get("error"),
                    "at": columns.get("at"),
                },
            ).scalar_one()
        )


def recorded(db: Engine) -> list[tuple[str, str, str, str]]:
    with db.connect() as connection:
        rows = connection.execute(text("SELECT actor, action, target, outcome FROM console_actions ORDER BY id"))
        return [tuple(r) for r in rows]  # type: ignore[misc]


# ------------------------------------------------------------------ pages


def test_every_page_answers_html_with_its_heading(console: Invoke, db: Engine) -> None:
    log_id = log_event(db, "console-page-1", "completed")
    for path, query, heading in (
        ("/console", "", "Overview"),
        ("/console/events", "status=completed&module=students", "Events"),
        ("/console/event", f"id={log_id}", "Event console-page-1"),
        ("/console/student", "", "Student"),
        ("/console/actions", "", "Actions"),
    ):
        page = get(console, path, query)
        assert page["statusCode"] == 200, (path, page["body"][:500])
        assert page["headers"]["content-type"] == "text/html; charset=utf-8"
        assert "frame-ancestors 'none'" in page["headers"]["content-security-policy"]
        assert f"<h1>{heading}</h1>" in page["body"], path
        assert "<script" not in page["body"]


def test_values_are_escaped(console: Invoke, db: Engine) -> None:
    log_id = log_event(db, "console-<b>bold</b>", "failed", error="<script>alert(1)</script>")

    page = get(console, "/console/event", f"id={log_id}")["body"]

    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "console-&lt;b&gt;bold&lt;/b&gt;" in page


def day_table(page: str) -> dict[str, list[str]]:
    """The overview's "Last 24 hours, by module and status" table: row header → the row's cells,
    with the column headers under ``"Module"`` and the totals under ``"All modules"``."""
    table = page[page.index("<caption>Last 24 hours, by module and status") :]
    table = table[: table.index("</table>")]
    rows: dict[str, list[str]] = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table, re.S):
        cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        rows[cells[0]] = cells[1:]
    return rows


def test_the_overview_counts_the_days_events_by_module_and_status(console: Invoke, db: Engine) -> None:
    for n, (module, status) in enumerate(
        [("students", "completed"), ("students", "completed"), ("students", "failed"), ("enrollments", "failed")]
    ):
        log_event(db, f"console-day-{n}", status, module=module)
    log_event(db, "console-day-old", "completed", module="grades", at=datetime.now(UTC) - timedelta(days=3))

    page = get(console, "/console")["body"]
    rows = day_table(page)

    assert rows["Module"] == ["completed", "failed", "All"]
    assert rows["students"] == ["2", "1", "3"]
    assert rows["enrollments"] == ["0", "1", "1"]
    assert rows["All modules"] == ["2", "2", "4"]
    assert "grades" not in rows  # three days old: not today's
    assert "Last 24 hours, by module and status (4 in all)" in page
    assert "/console/events?module=students&amp;status=failed&amp;from=" in page


@pytest.mark.parametrize(
    ("path", "query", "status"),
    [
        ("/console/events", "status=bogus", 400),
        ("/console/events", "from=yesterday", 400),
        ("/console/events", "before=1;DROP", 400),
        ("/console/event", "id=999999999", 400),
        ("/console/event", "", 400),
        ("/console/student", "by=moodle_user_id&q=not-a-number", 400),
        ("/console/student", "by=shoe_size&q=9", 400),
        ("/console/nowhere", "", 404),
    ],
)
def test_what_the_console_cannot_use_is_refused_with_a_reason(
    console: Invoke, path: str, query: str, status: int
) -> None:
    page = get(console, path, query)

    assert page["statusCode"] == status
    assert 'role="alert"' in page["body"]


def test_a_student_nobody_knows_is_said_so(console: Invoke) -> None:
    page = get(console, "/console/student", "by=email&q=nobody%40example.ac.uk")

    assert page["statusCode"] == 200
    assert "Nobody found by that e-mail." in page["body"]


def test_keyset_pages_list_every_event_once_newest_first(fresh_database: Callable[[str], str]) -> None:
    url = fresh_database("console_pages")
    upgrade(url)
    db = make_engine(url)
    # Given 130 events, many arriving in the same instant (ties broken by id), a few failed
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    for i in range(130):
        log_event(db, f"page-{i}", "failed" if i % 10 == 0 else "completed", at=at + timedelta(seconds=i // 7))
    store = ConsoleStore(
        PreparedConnection(lambda: connect_params(url, timeout=5, statement_timeout_ms=5000, application_name="t"))
    )

    def every_page(where: EventFilter) -> list[str]:
        seen, before = [], None
        while True:
            page = store.events(where, before, limit=25)
            seen += [e["event_id"] for e in page]
            if len(page) < 25:
                return seen
            before = page[-1]["id"]

    with db.connect() as connection:
        expected = [
            r[0]
            for r in connection.execute(
                text("SELECT event_id FROM integration_events_log ORDER BY received_at DESC, id DESC")
            )
        ]
        failed = [
            r[0]
            for r in connection.execute(
                text(
                    "SELECT event_id FROM integration_events_log WHERE status = 'failed'"
                    " ORDER BY received_at DESC, id DESC"
                )
            )
        ]
    assert every_page(EventFilter()) == expected
    assert every_page(EventFilter(status="failed")) == failed
    window = EventFilter(received_from=at + timedelta(seconds=3), received_to=at + timedelta(seconds=5))
    assert sorted(every_page(window)) == sorted(f"page-{i}" for i in range(130) if 3 <= i // 7 < 5)
    db.dispose()


def test_the_next_page_link_carries_the_filters(console: Invoke, db: Engine) -> None:
    for i in range(52):
        log_event(db, f"console-link-{i}", "dead_lettered", module="payments")

    page = get(console, "/console/events", "status=dead_lettered&module=payments")["body"]
    older = re.search(r'href="/console/events\?([^"]+)" rel="next"', page)

    assert older is not None
    query = parse_qs(older.group(1).replace("&amp;", "&"))
    assert (query["status"], query["module"]) == (["dead_lettered"], ["payments"])
    assert query["before"]
    second = get(console, "/console/events", older.group(1).replace("&amp;", "&"))["body"]
    assert second.count("console-link-") >= 2


# ------------------------------------------------------------------ actions


def test_replaying_a_failed_event_queues_it_and_records_who(console: Invoke, db: Engine, queues: Queues) -> None:
    log_id = log_event(db, "console-replay-1", "failed", error="the database refused a value")
    page = get(console, "/console/event", f"id={log_id}")
    assert "Replay this event" in page["body"]

    answer = post(
        console,
        {"csrf": csrf_of(page), "action": "replay", "target": str(log_id), "return_to": f"/console/event?id={log_id}"},
        {"origin": "https://console.test", "sec-fetch-site": "same-origin"},
    )

    assert answer["statusCode"] == 303
    assert re.fullmatch(rf"/console/event\?id={log_id}&done=\d+", answer["headers"]["location"])
    assert recorded(db)[-1] == (LOCAL, "replay", str(log_id), "replayed")
    messages = queues.receive_all(queues.urls["students"])
    assert [json.loads(m["Body"])["event_id"] for m in messages] == ["console-replay-1"]
    with db.connect() as connection:
        status = connection.execute(text("SELECT status FROM integration_events_log WHERE id = :i"), {"i": log_id})
        assert status.scalar_one() == "replayed"
    shown = get(console, "/console/event", urlsplit(answer["headers"]["location"]).query)["body"]
    assert 'role="status"' in shown
    assert "replayed" in shown


def test_a_settled_event_is_not_replayed_and_the_record_says_why(console: Invoke, db: Engine, queues: Queues) -> None:
    log_id = log_event(db, "console-replay-done", "completed")
    csrf = csrf_of(get(console, "/console"))

    post(console, {"csrf": csrf, "action": "replay", "target": str(log_id)})

    assert recorded(db)[-1] == (LOCAL, "replay", str(log_id), "not replayed: the event is completed")
    assert queues.receive_all(queues.urls["students"]) == []


def test_a_delivery_is_resent_and_a_paused_destination_resumed(console: Invoke, db: Engine, queues: Queues) -> None:
    with db.begin() as connection:
        delivery = connection.execute(
            text(
                "INSERT INTO deliveries (destination, action, target_key, status, last_error)"
                " VALUES ('moodle', 'user', 'console-resend', 'failed', 'invalid parameter') RETURNING id"
            )
        ).scalar_one()
        paused = connection.execute(
            text(
                "INSERT INTO deliveries (destination, action, target_key, status)"
                " VALUES ('zoho', 'grade', 'console-paused', 'paused') RETURNING id"
            )
        ).scalar_one()
        connection.execute(
            text(
                "INSERT INTO destinations (name, paused_at, pause_reason) VALUES ('zoho', now(), 'credentials refused')"
                " ON CONFLICT (name) DO UPDATE SET paused_at = now(), pause_reason = 'credentials refused'"
            )
        )
    csrf = csrf_of(get(console, "/console"))

    post(console, {"csrf": csrf, "action": "resend", "target": str(delivery)})
    post(console, {"csrf": csrf, "action": "resume", "target": "zoho"})

    assert recorded(db)[-2:] == [
        (LOCAL, "resend", str(delivery), "sent again"),
        (LOCAL, "resume", "zoho", "resumed; 1 deliveries sent again"),
    ]
    with db.connect() as connection:
        statuses = dict(
            connection.execute(
                text("SELECT id, status FROM deliveries WHERE id IN (:a, :b)"), {"a": delivery, "b": paused}
            ).all()
        )
        assert statuses == {delivery: "pending", paused: "pending"}
        assert connection.execute(text("SELECT paused_at FROM destinations WHERE name = 'zoho'")).scalar_one() is None


def test_a_reconciliation_dry_run_is_asked_of_the_reconciliation_function(
    console: Invoke, db: Engine, queues: Queues, reconcile_queue: str
) -> None:
    post(console, {"csrf": csrf_of(get(console, "/console")), "action": "reconcile", "target": "dry-run"})

    assert recorded(db)[-1] == (LOCAL, "reconcile", "dry-run", "dry run requested")
    messages = queues.receive_all(reconcile_queue)
    assert [json.loads(m["Body"]) for m in messages] == [{"dry_run": True, "requested_by": f"console:{LOCAL}"}]


@pytest.mark.parametrize(
    ("form", "headers", "why"),
    [
        ({"csrf": "0" * 64}, {}, "token does not match"),
        ({}, {}, "token does not match"),
        (None, {"sec-fetch-site": "cross-site"}, "own pages"),
        (None, {"origin": "https://evil.example"}, "own pages"),
    ],
)
def test_a_forged_or_cross_site_action_changes_nothing(
    console: Invoke, db: Engine, queues: Queues, form: dict[str, str] | None, headers: dict[str, str], why: str
) -> None:
    log_id = log_event(db, f"console-forged-{why}-{len(headers)}", "failed")
    before = recorded(db)
    sent = {
        "action": "replay",
        "target": str(log_id),
        **(form if form is not None else {"csrf": csrf_of(get(console, "/console"))}),
    }

    answer = post(console, sent, headers)

    assert answer["statusCode"] == 403
    assert why in answer["body"]
    assert recorded(db) == before
    assert queues.receive_all(queues.urls["students"]) == []


# ------------------------------------------------------------------ deployed: signed in through Cognito


@pytest.fixture
def deployed(load: Callable[..., Invoke], reconcile_queue: str) -> Invoke:
    return load(
        "ConsoleFunction",
        CONSOLE_LOGIN="cognito",
        COGNITO_DOMAIN="https://college-console.auth.eu-west-2.amazoncognito.com",
        COGNITO_USER_POOL_ID="eu-west-2_Console",
        RECONCILE_QUEUE_URL=reconcile_queue,
    )


def test_without_a_session_the_console_asks_to_sign_in(deployed: Invoke) -> None:
    page = get(deployed, "/console")

    assert page["statusCode"] == 401
    assert 'href="/console/login"' in page["body"]


def test_a_reader_reads_and_cannot_act(deployed: Invoke, db: Engine) -> None:
    log_id = log_event(db, "console-reader", "failed")
    reader = ("reader@college.ac.uk", False, "a-session-token")
    page = get(deployed, "/console/event", f"id={log_id}", session=reader)
    assert page["statusCode"] == 200
    assert "reader@college.ac.uk (read only)" in page["body"]
    assert "Replay this event" not in page["body"]
    token = Caller("reader@college.ac.uk", False, "a-session-token").csrf_token()

    answer = post(deployed, {"csrf": token, "action": "replay", "target": str(log_id)}, session=reader)

    assert answer["statusCode"] == 403
    assert "only members of the operators group may act" in answer["body"]


def test_an_operator_acts_under_their_own_name_with_their_session_token(deployed: Invoke, db: Engine) -> None:
    log_id = log_event(db, "console-operator", "failed")
    operator = ("ops@college.ac.uk", True, "session-of-ops")
    page = get(deployed, "/console/event", f"id={log_id}", session=operator)
    other = ("ops@college.ac.uk", True, "another-session")

    refused = post(deployed, {"csrf": csrf_of(page), "action": "replay", "target": str(log_id)}, session=other)
    accepted = post(deployed, {"csrf": csrf_of(page), "action": "replay", "target": str(log_id)}, session=operator)

    assert (refused["statusCode"], accepted["statusCode"]) == (403, 303)
    assert recorded(db)[-1] == ("ops@college.ac.uk", "replay", str(log_id), "replayed")


class _TokenEndpoint(BaseHTTPRequestHandler):
    """Cognito's ``/oauth2/token``, as far as the console uses it."""

    seen: ClassVar[list[dict[str, list[str]]]] = []

    def do_POST(self) -> None:
        form = parse_qs(self.rfile.read(int(self.headers["content-length"])).decode())
        _TokenEndpoint.seen.append(form)
        good = form.get("code") == ["the-code"] and form.get("grant_type") == ["authorization_code"]
        answer = (
            {"access_token": "header.payload.signature", "expires_in": 3600} if good else {"error": "invalid_grant"}
        )
        raw = json.dumps(answer).encode()
        self.send_response(200 if good else 400)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def cognito_domain() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _TokenEndpoint.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_signing_in_uses_pkce_and_keeps_the_access_token_in_a_strict_cookie(cognito_domain: str) -> None:
    sign_in = SignIn(cognito_domain, lambda: "console-client")
    console = "https://api.example/console"

    started = sign_in.login(console)
    location = urlsplit(started["headers"]["location"])
    asked = parse_qs(location.query)
    state_and_verifier = started["cookies"][0].split(";")[0].split("=", 1)[1]
    state, verifier = state_and_verifier.split(".", 1)

    assert location.path == "/oauth2/authorize"
    assert (asked["client_id"], asked["redirect_uri"]) == (["console-client"], [f"{console}/callback"])
    assert (asked["state"], asked["code_challenge_method"]) == ([state], ["S256"])
    assert {"HttpOnly", "Secure"} <= {part.strip() for part in started["cookies"][0].split(";")}

    back = {"cookies": [f"{LOGIN_COOKIE}={state_and_verifier}"]}
    assert isinstance(sign_in.callback(console, back, {"state": "forged", "code": "the-code"}), str)
    assert isinstance(sign_in.callback(console, {}, {"state": state, "code": "the-code"}), str)
    assert isinstance(sign_in.callback(console, back, {"state": state, "code": "stolen"}), str)
    done = sign_in.callback(console, back, {"state": state, "code": "the-code"})

    assert isinstance(done, dict)
    assert done["headers"]["location"] == console
    session = done["cookies"][0]
    assert session.startswith(f"{SESSION_COOKIE}=header.payload.signature;")
    assert all(part in session for part in ("Path=/console", "Secure", "HttpOnly", "SameSite=Lax"))
    assert _TokenEndpoint.seen[-1]["code_verifier"] == [verifier]


def token(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.signature"


def test_the_authorizer_lets_through_only_what_cognito_accepts_from_the_stacks_pool() -> None:
    issuer = user_pool_issuer("eu-west-2_Console")
    accepted = {token({"iss": issuer, "token_use": "access", "cognito:groups": ["operators"]}): "ops"}

    def get_user(access_token: str) -> dict[str, Any]:
        if access_token not in accepted:
            raise ValueError("NotAuthorizedException")
        return {"Username": accepted[access_token]}

    authorizer = Authorizer(get_user, issuer, "operators")

    def ask(cookie: str | None) -> dict[str, Any]:
        return authorizer.decide({"cookies": [f"{SESSION_COOKIE}={cookie}"]} if cookie else {})

    good = next(iter(accepted))
    assert ask(good) == {"isAuthorized": True, "context": {"user": "ops", "operator": True}}
    assert ask(None) == {"isAuthorized": False}
    assert ask(token({"iss": issuer, "token_use": "access"})) == {"isAuthorized": False}  # Cognito refuses it
    other_pool = token({"iss": user_pool_issuer("eu-west-2_Other"), "token_use": "access"})
    accepted[other_pool] = "stranger"
    assert ask(other_pool) == {"isAuthorized": False}
    reader = token({"iss": issuer, "token_use": "access", "cognito:groups": ["readers"]})
    accepted[reader] = "reader"
    assert ask(reader) == {"isAuthorized": True, "context": {"user": "reader", "operator": False}}


@mock_aws
def test_the_authorizer_asks_cognito_about_a_real_pools_token(monkeypatch: pytest.MonkeyPatch) -> None:
    cognito = boto3.client("cognito-idp", region_name="eu-west-2")
    pool = cognito.create_user_pool(PoolName="console")["UserPool"]["Id"]
    client = cognito.create_user_pool_client(
        UserPoolId=pool, ClientName="console", ExplicitAuthFlows=["ADMIN_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    cognito.admin_create_user(UserPoolId=pool, Username="ops@college.ac.uk", TemporaryPassword="Temporary-Passw0rd")
    cognito.admin_set_user_password(
        UserPoolId=pool, Username="ops@college.ac.uk", Password="A-long-Passw0rd-x", Permanent=True
    )
    cognito.create_group(UserPoolId=pool, GroupName="operators")
    cognito.admin_add_user_to_group(UserPoolId=pool, Username="ops@college.ac.uk", GroupName="operators")
    tokens = cognito.admin_initiate_auth(
        UserPoolId=pool,
        ClientId=client,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "ops@college.ac.uk", "PASSWORD": "A-long-Passw0rd-x"},
    )["AuthenticationResult"]
    monkeypatch.delenv("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER", raising=False)
    authorizer = build_authorizer(Settings.model_validate({"COGNITO_USER_POOL_ID": pool}))

    answer = authorizer.decide({"cookies": [f"{SESSION_COOKIE}={tokens['AccessToken']}"]})
    forged = authorizer.decide({"cookies": [f"{SESSION_COOKIE}={token({'iss': user_pool_issuer(pool)})}"]})

    assert answer == {"isAuthorized": True, "context": {"user": "ops@college.ac.uk", "operator": True}}
    assert forged == {"isAuthorized": False}
