"""Starting: each function's cold start as Lambda bills it (Init Duration, then the first invocation's
Duration) against a floor measured the same way, and what each deploys."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

from bench.events import event_of, log_as_verified, pg, sqs_batch, student_webhook, verifier_log
from bench.harness import AWS, ROOT, Harness, Row, median, say, verdict
from devstack.samples import dev_environment, user_graded

# A container as Lambda starts one: the interpreter, the handler's module loaded (Lambda's Init
# Duration ends here), then the first request answered (the first invocation's Duration). Times are
# taken inside the process and it leaves with os._exit: Lambda never runs the interpreter's exit.
PROBE = """
import importlib.util, json, os, sys, time
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
loaded = time.time()

class Context:
    function_name, function_version, memory_limit_in_mb = "bench", "1", 512
    invoked_function_arn = "arn:aws:lambda:eu-west-2:123456789012:function:bench"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    def get_remaining_time_in_millis(self):
        return 30000

answer = module.handler(json.loads(sys.argv[2]), Context())
answered = time.time()
print(json.dumps({"loaded": loaded, "answered": answered, "answer": answer}), file=sys.__stderr__, flush=True)
os._exit(0)
"""
# The floor, measured the same way: boto3 imported and a client made, then one call.
FLOOR = """
import json, os, sys, time
import boto3
sqs = boto3.client("sqs")
loaded = time.time()
sqs.send_message(QueueUrl=sys.argv[1], MessageBody="floor")
answered = time.time()
print(json.dumps({"loaded": loaded, "answered": answered}), file=sys.__stderr__, flush=True)
os._exit(0)
"""
TARGETS = {"ZohoWebhookFunction": 1.5, "MoodleWebhookFunction": 1.5, "StudentsProcessor": 2.0}


def _run(command: list[str], environment: dict[str, str]) -> tuple[float, float]:
    """(init ms, first request ms) of one fresh process."""
    started = time.time()
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    marks = json.loads(done.stderr.strip().splitlines()[-1])
    answer = marks.get("answer") or {}
    # A verifier must answer 202 (a new event, logged and queued): a 200 is a duplicate, which skips
    # the queue and half the statements; a processor must leave no failure.
    if answer.get("statusCode", 202) != 202 or answer.get("batchItemFailures"):
        raise RuntimeError(
            f"the first request was not served: {answer}\n{done.stdout[-3000:]}"
        )  # a fast refusal is no cold start
    return (marks["loaded"] - started) * 1000, (marks["answered"] - marks["loaded"]) * 1000


def _secrets(h: Harness) -> dict[str, str]:
    """The webhook secrets in (moto's) Secrets Manager, as deployed: each function reads them on its
    first request, not at start. (The database is reached through ``DATABASE_URL``: the bench's
    Postgres may listen on a Unix socket only, which a login secret's host cannot name.)"""
    client = boto3.client("secretsmanager", endpoint_url=h.sqs_endpoint)
    development = dev_environment()
    made = {}
    for name, value in (
        ("ZOHO_WEBHOOK_SECRET_ARN", development["ZOHO_WEBHOOK_SECRET"]),
        ("MOODLE_WEBHOOK_SECRET_ARN", development["MOODLE_WEBHOOK_SECRET"]),
    ):
        made[name] = client.create_secret(Name=f"bench-{name}-{uuid.uuid4().hex[:6]}", SecretString=value)["ARN"]
    return made


def cold_start(h: Harness, runs: int = 21) -> list[Row]:
    say("cold start (init, then the first request) ...")
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "layers" / "common"), str(ROOT / "functions")], check=True
    )
    development = dev_environment()
    environment = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": f"{ROOT / 'layers' / 'common'}",
        **AWS,
        "AWS_ENDPOINT_URL_SQS": h.sqs_endpoint,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": h.sqs_endpoint,
        "DATABASE_URL": h.database_url,
        "DEAD_LETTER_QUEUE_URL": h.dlq_url,
        **{f"{m.upper()}_QUEUE_URL": url for m, url in h.queue_urls.items()},
        "POWERTOOLS_SERVICE_NAME": "event-router",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
        "MOODLE_WEBHOOK_TOKEN": development.get("MOODLE_WEBHOOK_TOKEN", ""),
        **_secrets(h),
    }
    log = verifier_log(h.database_url)
    serial = itertools.count()
    functions = {
        "ZohoWebhookFunction": ("webhook_verifier", {"SOURCE": "zoho"}),
        "MoodleWebhookFunction": ("webhook_verifier", {"SOURCE": "moodle"}),
        "StudentsProcessor": ("module_processor", {"MODULE": "students"}),
    }

    def request(name: str) -> dict[str, Any]:
        if name == "ZohoWebhookFunction":
            return student_webhook(next(serial), "cold").event()
        if name == "MoodleWebhookFunction":  # a new grade each time: a duplicate is answered without its work
            return user_graded(10_000 + next(serial), 431, 86.5, int(time.time())).event()
        events = [event_of(student_webhook(next(serial), "cold-processor"))]
        log_as_verified(log, events)
        return sqs_batch(events)

    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in ("floor", *functions)}
    for _ in range(runs):  # interleaved, so drift hits every command alike
        h.drain("students")
        timings["floor"].append(_run([sys.executable, "-c", FLOOR, h.queue_urls["payments"]], environment))
        for name, (code, setting) in functions.items():
            command = [
                sys.executable,
                "-c",
                PROBE,
                str(ROOT / "functions" / code / "app.py"),
                json.dumps(request(name)),
            ]
            timings[name].append(_run(command, {**environment, **setting}))
    # A verifier answers 202 even when its log is out of reach: every Zoho webhook must be in the log,
    # and every processor's event completed, or the first requests were timed without their work.
    done = pg(h.database_url).run(
        "SELECT count(*) FILTER (WHERE event_id NOT LIKE 'bench-cold-processor-%'),"
        " count(*) FILTER (WHERE event_id LIKE 'bench-cold-processor-%' AND status = 'completed')"
        " FROM integration_events_log WHERE event_id LIKE 'bench-cold-%'"
    )
    if done[0] != [runs, runs]:
        raise RuntimeError(f"of {runs} cold starts each, logged and completed: {done[0]}")
    floor_init, floor_first = (median([t[n] for t in timings["floor"]]) for n in (0, 1))
    floor = median([sum(t) for t in timings["floor"]])
    rows: list[Row] = [
        (
            "cold start floor: boto3 + SQS client, then one call",
            f"{floor:.0f} ms (init {floor_init:.0f} + first {floor_first:.0f})",
            "",
            "",
        )
    ]
    for name, target in TARGETS.items():
        total = median([sum(t) for t in timings[name]])
        init, first = (median([t[n] for t in timings[name]]) for n in (0, 1))
        rows.append(
            (
                f"cold start {name} / floor",
                f"{total / floor:.2f} ({total:.0f} ms: init {init:.0f} + first {first:.0f})",
                f"<= {target}",
                verdict(total / floor <= target),
            )
        )
    return rows


# ------------------------------------------------------------------ 4. round trips, counted


def package_sizes() -> list[Row]:
    say("package sizes (make build) ...")
    subprocess.run(["make", "--no-print-directory", "build"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    build = ROOT / ".aws-sam" / "build"

    def size(path: Path) -> float:
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1_000_000

    layer = build / "CommonLayer"
    rows: list[Row] = [("common layer, unzipped", f"{size(layer):.1f} MB", "< 15 MB", verdict(size(layer) < 15))]
    rows.append(
        (
            "boto3 packaged in the layer",
            "yes" if (layer / "python" / "boto3").exists() else "no",
            "no",
            verdict(not (layer / "python" / "boto3").exists()),
        )
    )
    for function in sorted(p.name for p in build.iterdir() if p.is_dir() and p.name != "CommonLayer"):
        rows.append((f"function {function}, unzipped", f"{size(build / function):.2f} MB", "", ""))
    return rows


# ------------------------------------------------------------------ the table
