"""The whole pipeline on one machine, with no AWS and no Docker (docs/operate.md): ``make dev``.

Everything is read from ``template.yaml``: the HTTP routes and the function
behind each, the queues with their visibility timeout and redrive policy, the
SQS triggers with their batch size, batching window and partial batch
responses, the schedules, and every function's environment. Postgres is the
embedded server (data kept in ``.local/postgres``) unless ``DATABASE_URL`` is
set; AWS is moto's server, in-process, on a free loopback port. Moodle is the stand-in
(``devstack.moodle_standin``, with the sample enrolment's course) unless ``MOODLE_URL`` and
``MOODLE_TOKEN`` name a real one; Zoho CRM's API is the Zoho stand-in (``devstack.zoho_standin``),
which calls the stack's notify route back when its records change.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from devstack.invoke import Handler, LocalContext, load_function
from devstack.moodle_standin import MoodleStandIn
from devstack.poller import QueuePoller
from devstack.postgres import create_database, start_embedded, with_database
from devstack.samples import DEV_ERASURE_KEY, SAMPLE_COURSE, dev_environment
from devstack.server import Limits, Route, WebhookServer, free_port
from devstack.template import API_EVENTS, ROOT, FunctionSpec, Resolver, functions, load_template, resources_of_type
from devstack.zoho_standin import ZohoStandIn
from event_router.operate.migrate import upgrade

# moto's HTTP server logs every request, and pgserver warns about XDG_RUNTIME_DIR: neither helps here.
logging.getLogger("werkzeug").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

STACK_NAME = "event-router"
LOCAL_API = "local"  # what Ref WebhookApi (and OperatorApi) gives locally
DATABASE = "event_router"
AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "eu-west-2",
    "AWS_REGION": "eu-west-2",
}


def local_dir() -> Path:
    """Where the stack keeps its data and state file (``LOCAL_DIR``, default ``.local``)."""
    return Path(os.environ.get("LOCAL_DIR", ROOT / ".local")).resolve()


def parse_overrides(text: str) -> dict[str, str]:
    """``"Key=Value Other=Value"`` (``sam deploy --parameter-overrides`` style)."""
    return dict(pair.split("=", 1) for pair in text.split() if "=" in pair)


@dataclass
class LocalStack:
    """Starts and stops the pieces; ``state`` is what ``make invoke`` needs to join in."""

    port: int = 3000
    database_url: str | None = None
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    moodle_url: str | None = None  # a real Moodle; None starts the stand-in
    moodle_token: str | None = None
    zoho_accounts_url: str | None = None  # a Zoho (or a stand-in of the caller's) to use; None starts ours
    zoho_credentials: dict[str, str] | None = None
    schedule_seconds: float | None = None  # run every schedule this often instead of at its rate
    api_limits: bool = False  # apply the webhook API's throttle and per-address limit, as deployed
    state: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._postgres: Any = None
        self._moto: ThreadedMotoServer | None = None
        self._server: WebhookServer | None = None
        self.moodle_standin: MoodleStandIn | None = None
        self.zoho_standin: ZohoStandIn | None = None
        self.handlers: dict[str, Handler] = {}
        self.timeouts: dict[str, float] = {}

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        directory = local_dir()
        directory.mkdir(parents=True, exist_ok=True)
        database_url = self._start_postgres(directory)
        upgrade(database_url)
        endpoint = self._start_moto()
        self._start_moodle()
        self._start_zoho()
        template = load_template()
        overrides = {"MoodleUrl": self.moodle_url or "", "ZohoDataCentre": "com", **self.parameter_overrides}
        resolver = Resolver(template, overrides, STACK_NAME)
        resolver.refs["WebhookApi"] = resolver.refs["OperatorApi"] = LOCAL_API
        # The console's sign-in is Cognito's: locally nobody signs in (CONSOLE_LOGIN=none, below).
        for kind in ("AWS::Cognito::UserPool", "AWS::Cognito::UserPoolGroup"):
            for name, resource in resources_of_type(template, kind).items():
                resolver.refs[name] = resource["Properties"].get("GroupName") or f"eu-west-2_{name}"
        self._create_queues(template, resolver)
        self._create_secrets(template, resolver)
        specs = functions(template)
        environments = {name: self._environment(spec, resolver, database_url) for name, spec in specs.items()}
        self.handlers = {
            name: load_function(s.code_uri, s.handler, environments[name], name) for name, s in specs.items()
        }
        self.timeouts = {name: spec.timeout for name, spec in specs.items()}
        self._start_server(specs, resolver)
        self._start_pollers(specs, resolver)
        self._start_schedules(specs)
        self.state = {
            "base_url": f"http://127.0.0.1:{self.port}",
            "database_url": database_url,
            "aws_endpoint": endpoint,
            "moodle_url": overrides["MoodleUrl"],
            "moodle": "stand-in" if self.moodle_standin else "real",
            "zoho_url": self.zoho_accounts_url,
            "zoho": "stand-in" if self.zoho_standin else "given",
            "pid": os.getpid(),
            "environments": environments,
            "dead_letter_queue_url": resolver.refs.get("DeadLetterQueue"),
        }
        (directory / "stack.json").write_text(json.dumps(self.state, indent=2))
        self._requeue_leftovers()

    def stop(self) -> None:
        """Stop everything this stack started; nothing is left running."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._moto is not None:
            self._moto.stop()
        if self.moodle_standin is not None:
            self.moodle_standin.stop()
        if self.zoho_standin is not None:
            self.zoho_standin.stop()
        if self._postgres is not None:
            self._postgres.cleanup()
        state_file = local_dir() / "stack.json"
        if state_file.exists() and json.loads(state_file.read_text()).get("pid") == os.getpid():
            state_file.unlink()

    def wait(self) -> None:
        while not self._stop.wait(0.5):
            pass

    def request_stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------ pieces

    def _start_postgres(self, directory: Path) -> str:
        if self.database_url:
            return self.database_url
        admin_url, self._postgres = start_embedded(directory / "postgres")
        create_database(admin_url, DATABASE, exist_ok=True)
        return with_database(admin_url, DATABASE)

    def _start_moto(self) -> str:
        port = free_port()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._moto.start()
        endpoint = f"http://127.0.0.1:{port}"
        # Every boto3 client of every function talks to moto: SQS, Secrets Manager. A service's own
        # endpoint variable would win over AWS_ENDPOINT_URL, so none is inherited.
        for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_")]:
            del os.environ[name]
        os.environ.update({**AWS_ENVIRONMENT, "AWS_ENDPOINT_URL": endpoint})
        self._sqs = boto3.client("sqs", endpoint_url=endpoint)
        return endpoint

    def _start_moodle(self) -> None:
        """The stand-in Moodle, with the course of the sample enrolment, unless a real one is given.
        Either way the functions read the token from the stack's secret, as deployed ones do."""
        os.environ.pop("MOODLE_TOKEN", None)
        os.environ.pop("MOODLE_URL", None)
        if self.moodle_url:
            return
        self.moodle_standin = MoodleStandIn().start()
        self.moodle_standin.site.create_course(SAMPLE_COURSE, shortname="L3IT")
        self.moodle_url, self.moodle_token = self.moodle_standin.url, self.moodle_standin.site.token

    def _start_zoho(self) -> None:
        """The Zoho stand-in, unless another is given: every function's Zoho client asks it for
        tokens (``ZOHO_ACCOUNTS_URL``) and it names itself as the API domain."""
        if not self.zoho_accounts_url:
            self.zoho_standin = ZohoStandIn().start()
            self.zoho_standin.org.create("BTEC_Classes", {"Name": "Level 3 IT", "Moodle_Course_ID": SAMPLE_COURSE})
            self.zoho_accounts_url, self.zoho_credentials = self.zoho_standin.url, self.zoho_standin.credentials
        os.environ["ZOHO_ACCOUNTS_URL"] = self.zoho_accounts_url
        os.environ.pop("ZOHO_CREDENTIALS", None)  # the functions read them from the stack's secret

    def _create_queues(self, template: dict[str, Any], resolver: Resolver) -> None:
        queues = resources_of_type(template, "AWS::SQS::Queue")
        for name in queues:  # first the queues, so redrive policies can name their targets
            url = self._sqs.create_queue(QueueName=f"{STACK_NAME}-{name}")["QueueUrl"]
            arn = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            resolver.refs[name] = url
            resolver.attributes[(name, "Arn")] = arn
            resolver.attributes[(name, "QueueName")] = f"{STACK_NAME}-{name}"
        for name, queue in queues.items():
            properties = resolver.resolve(queue.get("Properties", {}))
            attributes = {
                k: str(properties[k]) for k in ("VisibilityTimeout", "MessageRetentionPeriod") if k in properties
            }
            if "RedrivePolicy" in properties:
                attributes["RedrivePolicy"] = json.dumps(properties["RedrivePolicy"])
            if attributes:
                self._sqs.set_queue_attributes(QueueUrl=resolver.refs[name], Attributes=attributes)

    def _create_secrets(self, template: dict[str, Any], resolver: Resolver) -> None:
        """Each secret of the template: the webhook secrets hold the (fake) secrets of their source,
        the Moodle token secret the token of the Moodle in use; the database login secrets are
        created but unused (``DATABASE_URL`` says it all locally)."""
        client = boto3.client("secretsmanager")
        for name, resource in resources_of_type(template, "AWS::SecretsManager::Secret").items():
            if not resolver.exists(resource):
                continue
            value: dict[str, Any]
            if name == "MoodleTokenSecret":
                value = {"token": self.moodle_token or ""}
            elif name == "ErasureKeySecret":
                value = {"key": DEV_ERASURE_KEY}
            elif name == "ZohoCredentialsSecret":
                value = dict(self.zoho_credentials or {})
            elif name in ("ZohoWebhookSecret", "MoodleWebhookSecret"):
                source = name.removesuffix("WebhookSecret").upper()
                value = {
                    "secrets": _split(self.secrets.get(f"{source}_WEBHOOK_SECRET", "")),
                    "tokens": _split(self.secrets.get(f"{source}_WEBHOOK_TOKEN", "")),
                }
            else:
                value = {"username": "local", "password": "local-NOT-A-SECRET"}
            arn = client.create_secret(Name=f"{STACK_NAME}-{name}", SecretString=json.dumps(value))["ARN"]
            resolver.refs[name] = arn

    def _environment(self, spec: FunctionSpec, resolver: Resolver, database_url: str) -> dict[str, str]:
        variables = {name: str(resolver.resolve(value)) for name, value in spec.environment.items()}
        # The APIs' public URLs (Zoho's notify URL) are this stack's address; it serves no stage prefix.
        public = f"https://{LOCAL_API}.execute-api.eu-west-2.amazonaws.com"
        local = f"http://127.0.0.1:{self.port}"
        variables = {k: v.replace(f"{public}/live", local).replace(public, local) for k, v in variables.items()}
        # The console is served on 127.0.0.1 only, to whoever runs the stack: no sign-in.
        if variables.get("CONSOLE_LOGIN") == "cognito":
            variables["CONSOLE_LOGIN"] = "none"
        # Deployed functions log in with a Secrets Manager secret; locally the URL says it all.
        return {**variables, "DATABASE_URL": database_url}

    def _start_server(self, specs: dict[str, FunctionSpec], resolver: Resolver) -> None:
        routes = [
            Route(
                event["Method"].upper(),
                event["Path"],
                name,
                self.handlers[name],
                iam=(event.get("Auth") or {}).get("Authorizer") == "AWS_IAM",
                rest=kind == "Api",
            )
            for name, spec in specs.items()
            for kind in API_EVENTS
            for event in spec.events_of_type(kind)
        ]
        self._server = WebhookServer(("127.0.0.1", self.port), routes, limits=self._limits(resolver))
        self.port = self._server.server_address[1]
        self._spawn("http", self._server.serve_forever)

    def _limits(self, resolver: Resolver) -> Limits | None:
        """The webhook API's throttle and web ACL, from the template's parameters, when asked for."""
        if not self.api_limits:
            return None
        given = resolver.parameters
        return Limits(
            rate=float(given["ApiThrottlingRateLimit"]),
            burst=int(given["ApiThrottlingBurstLimit"]),
            per_address=int(given["WebhookRequestsPerAddressPerMinute"]),
            trusted=tuple(ipaddress.ip_network(c) for c in given["TrustedSenderCidrs"]),
        )

    def _start_pollers(self, specs: dict[str, FunctionSpec], resolver: Resolver) -> None:
        for name, spec in specs.items():
            for trigger in spec.events_of_type("SQS"):
                properties = resolver.resolve(trigger)
                queue_arn = properties["Queue"]
                url = next(
                    resolver.refs[q] for (q, a), v in resolver.attributes.items() if a == "Arn" and v == queue_arn
                )
                poller = QueuePoller(
                    self._sqs,
                    url,
                    self.handlers[name],
                    name,
                    batch_size=int(properties.get("BatchSize", 10)),
                    batching_window=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
                    report_batch_item_failures="ReportBatchItemFailures" in properties.get("FunctionResponseTypes", []),
                )
                self._spawn(f"poller-{name}", self._poll_forever, poller)

    def _poll_forever(self, poller: QueuePoller) -> None:
        while not self._stop.is_set():
            try:
                poller.poll_once(wait_seconds=1)
            except Exception as error:  # noqa: BLE001 - a poller must outlive a hiccup, as Lambda's does
                print(f"poller {poller.function_name}: {type(error).__name__}; retrying", flush=True)
                self._stop.wait(1)

    def _start_schedules(self, specs: dict[str, FunctionSpec]) -> None:
        """Every ``rate(...)`` schedule, at its rate (or ``schedule_seconds``). A time-of-day schedule
        (the nightly reconciliation's) is not run locally: ``make reconcile`` runs it."""
        for name, spec in specs.items():
            for schedule in spec.events_of_type("Schedule"):
                if not (isinstance(schedule["Schedule"], str) and schedule["Schedule"].startswith("rate(")):
                    continue
                seconds = self.schedule_seconds or _rate_seconds(schedule["Schedule"])
                payload = json.loads(schedule.get("Input", "{}"))
                self._spawn(f"schedule-{name}", self._run_every, name, seconds, payload)

    def _run_every(self, name: str, seconds: float, payload: dict[str, Any]) -> None:
        if "check" in payload:  # a destination's health check runs at start too, not only after its period
            self._invoke_safely(name, payload)
        while not self._stop.wait(seconds):
            self._invoke_safely(name, payload)

    def _invoke_safely(self, name: str, payload: dict[str, Any]) -> None:
        try:
            self.invoke(name, payload)
        except Exception as error:  # noqa: BLE001 - a schedule outlives a failed run, as EventBridge's does
            print(f"schedule {name}: {type(error).__name__}; next run as scheduled", flush=True)

    def invoke(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.handlers[name](payload, LocalContext(name, timeout_seconds=self.timeouts.get(name, 30.0)))

    def _requeue_leftovers(self) -> None:
        """Queues live in memory: events that were on them when the stack last stopped go back on."""
        leftovers = {
            "mode": "log",
            "statuses": ["received", "queued", "processing", "replayed"],
            "max_messages": 10_000,
            "received_grace_seconds": 0,
            "replayed_grace_seconds": 0,
        }
        result = self.invoke("ReplayFunction", leftovers)
        if result.get("replayed"):
            print(f"re-queued {result['replayed']} events left on the queues when the stack last stopped", flush=True)
        deliveries = {"mode": "deliveries", "delivery_statuses": ["pending"], "max_messages": 10_000}
        result = self.invoke("ReplayFunction", deliveries)
        if result.get("replayed"):
            print(f"re-queued {result['replayed']} deliveries left on the queues", flush=True)

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _rate_seconds(expression: str) -> float:
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    if match is None:
        raise ValueError(f"unsupported schedule {expression!r}")
    unit = {"minute": 60, "hour": 3600, "day": 86400}[match.group(2).rstrip("s")]
    return int(match.group(1)) * unit


def configured_stack() -> LocalStack:
    """The stack as the environment configures it (docs/local-stack.md, "Configuration")."""
    env_file = json.loads((ROOT / "events" / "env.json").read_text())
    fake = dev_environment()
    secrets = {
        name: os.environ.get(name) or next((f[name] for f in env_file.values() if name in f), fake.get(name, ""))
        for name in ("ZOHO_WEBHOOK_SECRET", "MOODLE_WEBHOOK_SECRET", "ZOHO_WEBHOOK_TOKEN", "MOODLE_WEBHOOK_TOKEN")
    }
    moodle_url, moodle_token = os.environ.get("MOODLE_URL") or None, os.environ.get("MOODLE_TOKEN") or None
    if bool(moodle_url) != bool(moodle_token):
        raise SystemExit(
            "Set both MOODLE_URL and MOODLE_TOKEN to deliver to a real Moodle, or neither for the stand-in."
        )
    return LocalStack(
        port=int(os.environ.get("PORT", "3000")),
        database_url=os.environ.get("DATABASE_URL") or None,
        parameter_overrides=parse_overrides(os.environ.get("PARAMETER_OVERRIDES", "")),
        secrets=secrets,
        moodle_url=moodle_url,
        moodle_token=moodle_token,
        zoho_accounts_url=os.environ.get("ZOHO_ACCOUNTS_URL") or None,
        zoho_credentials=json.loads(os.environ["ZOHO_CREDENTIALS"]) if os.environ.get("ZOHO_CREDENTIALS") else None,
        schedule_seconds=float(os.environ["LOCAL_SCHEDULE_SECONDS"])
        if os.environ.get("LOCAL_SCHEDULE_SECONDS")
        else None,
        api_limits=os.environ.get("API_LIMITS", "off") == "on",
    )
