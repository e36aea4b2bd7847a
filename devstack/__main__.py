"""``python -m devstack <command>``: the local stack and the tools that talk to it.

dev                      start the whole pipeline (make dev)
invoke FUNCTION EVENT    run one function in-process against the running stack (make invoke)
send                     send every sample webhook of events/ to the running stack (make send)
replay JSON              run the replay function against the running stack (make replay)
privacy JSON             send a privacy request to the running stack, as its local IAM user (make privacy)
reconcile JSON           run the reconciliation against the running stack (make reconcile)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from devstack.invoke import LocalContext, environment, load_function
from devstack.moodle_standin import DEV_TOKEN
from devstack.samples import EVENTS_DIR, SAMPLE_COURSE, SAMPLES, ZOHO_RECORDS, zoho_webhook
from devstack.stack import AWS_ENVIRONMENT, configured_stack, local_dir
from devstack.template import functions, load_template
from devstack.zoho_limits import CLIENT_ID as ZOHO_CLIENT_ID
from event_router.verify.signatures import sign


def dev() -> None:
    # EMF metric lines are for CloudWatch; locally they would drown the logs (DEV_METRICS=1 keeps them).
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "false" if os.environ.get("DEV_METRICS") else "true")
    stack = configured_stack()
    if not port_free(stack.port):  # before anything starts: nothing to stop, one clear line
        sys.exit(f"Port {stack.port} is in use (another `make dev`?): stop it, or start this one with PORT=<another>.")
    # Ctrl-C and SIGTERM both stop the stack, even where the shell that started it ignores SIGINT.
    signal.signal(signal.SIGTERM, lambda *_: stack.request_stop())
    signal.signal(signal.SIGINT, lambda *_: stack.request_stop())
    try:
        stack.start()
        # For the developer, on stderr: stdout carries the functions' JSON logs, and nothing secret.
        print(banner(stack.state, stack.secrets), file=sys.stderr, flush=True)
        stack.wait()
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the local stack...", flush=True)
        stack.stop()
        print("stopped", flush=True)


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def request(text: str, command: str, example: str) -> dict[str, Any]:
    """The JSON request given as ARGS, or a one-line explanation of what to give instead."""
    if not text.strip():
        sys.exit(f"Give the request as ARGS, e.g. make {command} ARGS='{example}'")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        sys.exit(f"ARGS is not JSON ({error.msg} at character {error.pos}), e.g. make {command} ARGS='{example}'")
    if not isinstance(document, dict):
        sys.exit(f"ARGS must be a JSON object, e.g. make {command} ARGS='{example}'")
    return document


def banner(state: dict[str, Any], secrets: dict[str, str]) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    _, record_id, fields = ZOHO_RECORDS["student"]
    sample = zoho_webhook(
        "students", record_id, operation="insert", modified=stamp, notification_id=f"curl-{stamp}", **fields
    )
    body = json.dumps(json.loads(sample.body), separators=(",", ":"))  # one line, to paste
    signature = sign(secrets["ZOHO_WEBHOOK_SECRET"].split(",")[0], body.encode())
    base = state["base_url"]
    return f"""
BTEC event router: local stack running (Ctrl-C stops it)

  API         {base}/api/v1/events/...   health: {base}/api/v1/events/health
  Database    {state["database_url"]}
  AWS (moto)  {state["aws_endpoint"]}
  Moodle      {moodle_line(state)}
  Zoho CRM    {state["zoho_url"]} (the stand-in; fake client {ZOHO_CLIENT_ID})
              a person's change, which Zoho notifies: curl -s -X POST {state["zoho_url"]}/standin/BTEC_Students \\
                -d '{{"Name": "Grace Hopper", "Student_ID_Number": "BTEC-2", "Academic_Email": "grace@example.ac.uk"}}'

  Fake development secrets (never use them in a deployed stack):
    ZOHO_WEBHOOK_SECRET={secrets["ZOHO_WEBHOOK_SECRET"]}
    MOODLE_WEBHOOK_SECRET={secrets["MOODLE_WEBHOOK_SECRET"]}
    MOODLE_WEBHOOK_TOKEN={secrets["MOODLE_WEBHOOK_TOKEN"]}

  Send a signed webhook:
    curl -si {base}/api/v1/events/zoho/student -H 'Content-Type: application/json' \\
      -H 'X-Zoho-Signature: sha256={signature}' \\
      --data-binary '{body}'

  Then: curl -s {base}/api/v1/events/stats    (or: make send, make invoke, make replay)
"""


def moodle_line(state: dict[str, Any]) -> str:
    if state["moodle"] == "real":
        return f"{state['moodle_url']} (MOODLE_URL; the token from MOODLE_TOKEN)"
    return f"{state['moodle_url']} (the stand-in; course {SAMPLE_COURSE}; fake web-service token {DEV_TOKEN})"


def running_state() -> dict[str, Any]:
    state_file = local_dir() / "stack.json"
    if not state_file.exists():
        sys.exit("The local stack is not running: start it with `make dev` in another terminal.")
    state: dict[str, Any] = json.loads(state_file.read_text())
    return state


def invoke(function_name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Run one function of the template in this process, wired to the running stack."""
    state = running_state()
    specs = functions(load_template())
    if function_name not in specs:
        sys.exit(f"No function {function_name!r} in template.yaml; choose one of: {', '.join(specs)}")
    spec = specs[function_name]
    aws = {**AWS_ENVIRONMENT, "AWS_ENDPOINT_URL": state["aws_endpoint"], "POWERTOOLS_METRICS_DISABLED": "true"}
    with environment(aws):
        handler = load_function(spec.code_uri, spec.handler, state["environments"][function_name], function_name)
        return handler(event, LocalContext(function_name, timeout_seconds=spec.timeout))


def privacy(request: dict[str, Any]) -> None:
    """A privacy request to the running stack's ``POST /api/v1/privacy``, as its local IAM user."""
    url = running_state()["base_url"] + "/api/v1/privacy"
    status, answer = http("POST", url, json.dumps(request).encode(), {"content-type": "application/json"})
    print(f"POST /api/v1/privacy -> {status}\n{json.dumps(json.loads(answer), indent=2)}")


def send() -> None:
    """Every sample webhook of events/, over HTTP, then the stats."""
    base = running_state()["base_url"]
    for name, sample in SAMPLES.items():
        event = json.loads((EVENTS_DIR / f"{name}.json").read_text())
        method, path = event["httpMethod"], event["path"]
        status, answer = http(method, base + path, sample.body, event["headers"])
        print(f"{status}  {name:<34} {answer}")
    status, stats = http("GET", f"{base}/api/v1/events/stats")
    print(f"\nGET /api/v1/events/stats -> {status}\n{json.dumps(json.loads(stats), indent=2)}")


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def main(argv: list[str]) -> None:
    command, *args = argv or ["help"]
    if command == "dev":
        dev()
    elif command == "invoke" and len(args) == 2:
        if not (args[0] and args[1]):
            sys.exit("Name the function and the event: make invoke FUNCTION=<logical id> EVENT=events/<file>.json")
        if args[1] != "-" and not Path(args[1]).is_file():
            sys.exit(f"No event file {args[1]!r}: the samples are in events/ (make generate writes them)")
        event = json.loads(Path(args[1]).read_text()) if args[1] != "-" else json.load(sys.stdin)
        print(json.dumps(invoke(args[0], event), indent=2, default=str))
    elif command == "send":
        send()
    elif command == "replay" and len(args) == 1:
        replay = request(args[0], "replay", '{"mode": "dlq", "dry_run": true}')
        print(json.dumps(invoke("ReplayFunction", replay), indent=2))
    elif command == "privacy" and len(args) == 1:
        privacy(request(args[0], "privacy", '{"action": "history"}'))
    elif command == "reconcile" and len(args) <= 1:
        reconciling = request(args[0], "reconcile", '{"dry_run": true}') if args and args[0].strip() else {}
        print(json.dumps(invoke("ReconcileFunction", reconciling), indent=2))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
