"""The developer's commands explain a missing or wrong argument in one line, never with a traceback,
and a second ``make dev`` on a busy port says so before it starts anything."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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
