"""Starting: each function's cold start against a floor measured the same way, and what each deploys."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import ROOT, Row, median, say, verdict

PROBE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
"""
FLOOR = "import boto3; boto3.client('sqs')"


def cold_start(runs: int = 21) -> list[Row]:
    say("cold start ...")
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "layers" / "common"), str(ROOT / "functions")], check=True
    )
    environment = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": f"{ROOT / 'layers' / 'common'}",
        # As deployed: login and webhook secrets in Secrets Manager, nothing fetched before the first request.
        "AWS_REGION": "eu-west-2",
        "AWS_DEFAULT_REGION": "eu-west-2",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "DATABASE_HOST": "db.internal",
        "DATABASE_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:1:secret:db",
        "ZOHO_WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:1:secret:z",
        "MOODLE_WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:eu-west-2:1:secret:m",
        "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-2.amazonaws.com/1/dlq",
        **{
            f"{m}_QUEUE_URL": f"https://sqs.eu-west-2.amazonaws.com/1/{m.lower()}"
            for m in ("STUDENTS", "ENROLLMENTS", "GRADES", "PAYMENTS")
        },
        "POWERTOOLS_SERVICE_NAME": "event-router",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
    }
    commands: dict[str, list[str]] = {"floor": [sys.executable, "-c", FLOOR]}
    settings_of: dict[str, dict[str, str]] = {"floor": {}}
    for name, code, setting in (
        ("ZohoWebhookFunction", "webhook_verifier", {"SOURCE": "zoho"}),
        ("MoodleWebhookFunction", "webhook_verifier", {"SOURCE": "moodle"}),
        ("StudentsProcessor", "module_processor", {"MODULE": "students"}),
    ):
        commands[name] = [sys.executable, "-c", PROBE, str(ROOT / "functions" / code / "app.py")]
        settings_of[name] = setting
    timings: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):  # interleaved, so drift hits every command alike
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, env={**environment, **settings_of[name]}, check=True)
            timings[name].append((time.perf_counter() - started) * 1000)
    floor = median(timings["floor"])
    rows: list[Row] = [("cold start floor: python + import boto3 + SQS client", f"{floor:.0f} ms", "", "")]
    for name, target in (("ZohoWebhookFunction", 1.5), ("MoodleWebhookFunction", 1.5), ("StudentsProcessor", 2.0)):
        ratio = median(timings[name]) / floor
        rows.append(
            (
                f"cold start {name} / floor",
                f"{ratio:.2f} ({median(timings[name]):.0f} ms)",
                f"<= {target}",
                verdict(ratio <= target),
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
