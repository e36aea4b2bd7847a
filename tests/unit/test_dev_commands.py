"""The developer's commands explain a missing or wrong argument in one line, never with a traceback,
and a second ``make dev`` on a busy port says so before it starts anything."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from devstack import process

ROOT = Path(__file__).resolve().parents[2]


def devstack(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "devstack", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'layers' / 'common'}", **environment},
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("replay", ""), "Give the request as ARGS"),
        (("privacy", ""), "Give the request as ARGS"),
        (("replay", "{mode: dlq}"), "ARGS is not JSON"),
        (("reconcile", "[1]"), "ARGS must be a JSON object"),
        (("invoke", "", ""), "Name the function and the event"),
        (("invoke", "ReplayFunction", "events/no-such-file.json"), "No event file"),
    ],
)
def test_a_missing_or_wrong_argument_is_explained_in_one_line(args: tuple[str, ...], says: str) -> None:
    result = devstack(*args)

    assert result.returncode == 1
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_a_second_stack_on_a_busy_port_says_so_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        result = devstack("dev", PORT=str(port), LOCAL_DIR=str(tmp_path))

    assert result.returncode == 1
    assert f"Port {port} is in use" in result.stderr
    assert "stopping" not in result.stdout
    assert "Traceback" not in result.stderr


def test_a_started_stack_has_described_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack answers its health check before it writes ``stack.json``: ``RunningStack.start``
    waits for this run's file too, so a test reading the state at once finds it (an earlier run's
    file, naming another process, does not count)."""
    real_popen = subprocess.Popen
    monkeypatch.setattr(process, "http", lambda *args, **kwargs: (200, b"{}"))
    monkeypatch.setattr(
        process.subprocess,
        "Popen",
        lambda *args, **kwargs: real_popen([sys.executable, "-c", "import time; time.sleep(60)"]),
    )
    local = tmp_path / "local"
    local.mkdir()
    (local / "stack.json").write_text(json.dumps({"pid": -1}))  # left by an earlier run
    stack = process.RunningStack(local, None)

    def describe_later() -> None:
        while stack.process is None:
            time.sleep(0.05)
        time.sleep(0.5)
        (local / "stack.json").write_text(json.dumps({"pid": stack.process.pid, "zoho_url": "http://127.0.0.1:1"}))

    writer = threading.Thread(target=describe_later)
    writer.start()
    try:
        stack.start(timeout=30)
        assert stack.process is not None
        assert stack.state()["pid"] == stack.process.pid
    finally:
        writer.join()
        if stack.process is not None:
            stack.process.kill()
            stack.process.wait()
