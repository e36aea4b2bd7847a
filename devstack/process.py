"""A local stack in a subprocess, as a developer runs it: for the end-to-end tests and the burst benchmark."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
from pathlib import Path
from typing import Any, ClassVar

import psutil

from devstack.__main__ import http
from devstack.samples import Sample
from devstack.server import free_port
from devstack.template import ROOT


class RunningStack:
    """One ``python -m devstack dev`` process and what it needs to be talked to."""

    log_files: ClassVar[list[Path]] = []  # every stack's output, for the tests' check of log lines

    def __init__(
        self,
        local_dir: Path,
        database_url: str | None,
        parameter_overrides: str = "",
        *,
        moodle: tuple[str, str] | None = None,
        zoho: tuple[str, dict[str, str]] | None = None,
        environment: dict[str, str] | None = None,
    ) -> None:
        """``moodle`` is a Moodle's (URL, token) to deliver to, ``zoho`` a Zoho's (accounts URL,
        credentials); None starts the stack's own stand-in."""
        self.local_dir = local_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "MOODLE_", "ZOHO_"))
        }
        environment = inherited | (environment or {})
        if moodle is not None:
            environment |= {"MOODLE_URL": moodle[0], "MOODLE_TOKEN": moodle[1]}
        if zoho is not None:
            environment |= {"ZOHO_ACCOUNTS_URL": zoho[0], "ZOHO_CREDENTIALS": json.dumps(zoho[1])}
        environment |= {
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'layers' / 'common'}",
            "PORT": str(self.port),
            "LOCAL_DIR": str(local_dir),
            "PARAMETER_OVERRIDES": parameter_overrides,
        }
        environment.pop("DATABASE_URL", None)
        if database_url:
            environment["DATABASE_URL"] = database_url
        self.environment = environment
        self.output = local_dir / "stack.log"  # stdout: the functions' JSON log lines
        self.messages = local_dir / "stack.err"  # stderr: the banner and messages for the developer
        RunningStack.log_files.append(self.output)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> None:
        """Start the stack and return once it answers its health check and has written its
        ``stack.json`` (after its server starts: a caller reading the state at once must find it)."""
        self.local_dir.mkdir(parents=True, exist_ok=True)
        with self.output.open("ab") as log, self.messages.open("ab") as messages:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devstack", "dev"], cwd=ROOT, env=self.environment, stdout=log, stderr=messages
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"stack exited early:\n{self.tail()}"
            try:
                if http("GET", f"{self.base_url}/api/v1/events/health")[0] == 200 and self._described():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"stack did not become healthy:\n{self.tail()}")

    def _described(self) -> bool:
        """This run's ``stack.json`` is written (not an earlier run's: it names its process)."""
        assert self.process is not None
        try:
            return bool(self.state().get("pid") == self.process.pid)
        except (OSError, ValueError):
            return False

    def tail(self) -> str:
        return self.output.read_text()[-2000:] + self.messages.read_text()[-2000:]

    def stop(self) -> None:
        """SIGTERM (what Ctrl-C does to ``make dev``, and the signal a process started in the
        background by a non-interactive shell still hears: it ignores SIGINT); then nothing of it may
        be left running."""
        assert self.process is not None
        descendants = psutil.Process(self.process.pid).children(recursive=True)
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=30) == 0, self.tail()
        _, alive = psutil.wait_procs(descendants, timeout=10)
        assert alive == []
        assert not [
            p for p in psutil.process_iter(["cmdline"]) if str(self.local_dir) in " ".join(p.info["cmdline"] or [])
        ]
        try:
            http("GET", f"{self.base_url}/api/v1/events/health")
        except urllib.error.URLError:
            pass
        else:
            raise AssertionError("the stack still answers after it stopped")

    def send(self, sample: Sample) -> tuple[int, dict[str, Any]]:
        method, path = sample.route.split(" ", 1)
        status, answer = http(method, self.base_url + path, sample.body, sample.headers())
        return status, json.loads(answer)

    def stats(self) -> dict[str, Any]:
        status, answer = http("GET", f"{self.base_url}/api/v1/events/stats")
        assert status == 200
        stats: dict[str, Any] = json.loads(answer)
        return stats

    def command(self, *args: str) -> str:
        """``python -m devstack <args>`` (what ``make send|invoke|replay`` run) against this stack."""
        result = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "devstack", *args],
            cwd=ROOT,
            env=self.environment,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return result.stdout

    def state(self) -> dict[str, Any]:
        """What the running stack wrote about itself (its moto endpoint, its Moodle...)."""
        state: dict[str, Any] = json.loads((self.local_dir / "stack.json").read_text())
        return state

    def replay(self, request: dict[str, Any]) -> dict[str, Any]:
        output = self.command("replay", json.dumps(request))
        return json.loads(output[output.index("{\n") :])
