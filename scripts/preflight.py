"""Before ``make deploy`` builds for minutes: is there anything to deploy with, and to?

``python scripts/preflight.py <ENV> [samconfig.toml]`` refuses, with what to do, when the
environment's ``parameter_overrides`` still hold the ``EXAMPLE`` placeholders of samconfig.toml, when
no AWS credentials can be found, or when AWS does not accept them (``sts get-caller-identity``, the
one call it makes, and only once the rest is in order). Exit status 2 and one line on stderr per
problem; 0 and the account it will deploy to otherwise.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def problems(environment: str, samconfig: Path) -> list[str]:
    """What stops a deploy of ``environment`` with ``samconfig``, found without the network."""
    config = tomllib.loads(samconfig.read_text())
    if environment not in config:
        return [f"{samconfig.name} has no environment {environment!r} (make deploy ENV=dev or ENV=prod)"]
    deploy = config[environment].get("deploy", {}).get("parameters", {})
    overrides = deploy.get("parameter_overrides", [])
    overrides = overrides.split() if isinstance(overrides, str) else overrides
    placeholders = sorted(o.split("=", 1)[0] for o in overrides if "EXAMPLE" in o)
    found = []
    if placeholders:
        found.append(
            f"{samconfig.name} [{environment}] still holds placeholders: {', '.join(placeholders)} "
            "(docs/deploy.md, step 1)"
        )
    import boto3  # noqa: PLC0415 - only once the file is read

    if boto3.Session().get_credentials() is None:
        found.append("no AWS credentials found: run `aws configure` or `aws sso login`, or set AWS_PROFILE")
    return found


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: preflight.py ENV [samconfig.toml]", file=sys.stderr)
        return 2
    samconfig = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "samconfig.toml"
    found = problems(argv[0], samconfig)
    if not found:
        import boto3  # noqa: PLC0415
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            identity = boto3.client("sts").get_caller_identity()
        except (BotoCoreError, ClientError) as error:
            found.append(f"AWS refused the credentials ({type(error).__name__}): check the profile and region")
        else:
            print(f"deploying {argv[0]} to account {identity['Account']} as {identity['Arn']}")
    for problem in found:
        print(f"preflight: {problem}", file=sys.stderr)
    return 2 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
