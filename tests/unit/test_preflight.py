"""``make deploy`` refuses before it builds: samconfig.toml's placeholders left, or no AWS credentials.
Neither check touches the network (the instance-metadata lookup is switched off)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NO_CREDENTIALS = {
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def preflight(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | NO_CREDENTIALS
    return subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(ROOT / "scripts" / "preflight.py"), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_the_committed_samconfig_is_refused_until_its_placeholders_are_replaced(environment: str) -> None:
    result = preflight(environment)

    assert result.returncode == 2
    assert "DatabaseHost" in result.stderr
    assert "DatabaseSecretArn" in result.stderr
    assert "DatabaseProxyEndpoint" not in result.stderr  # not recommended, so not in samconfig.toml


def test_a_filled_in_samconfig_without_credentials_is_refused_before_any_build(tmp_path: Path) -> None:
    samconfig = tmp_path / "samconfig.toml"
    samconfig.write_text('[dev.deploy.parameters]\nparameter_overrides = ["DatabaseHost=db.college.example.ac.uk"]\n')

    result = preflight("dev", str(samconfig))

    assert result.returncode == 2
    assert "placeholders" not in result.stderr
    assert "no AWS credentials found" in result.stderr


def test_an_unknown_environment_is_named(tmp_path: Path) -> None:
    result = preflight("staging")

    assert result.returncode == 2
    assert "no environment 'staging'" in result.stderr
