"""The direction of the code's dependencies (docs/decisions.md, "Dependencies flow one way"), checked
by Import Linter with the contracts of pyproject.toml: handlers → operate → process → sources →
verify → deliver → store → core, the two destinations independent, no cycle in any package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"event_router": ROOT / "layers" / "common" / "event_router"} | {
    name: ROOT / name for name in ("functions", "devstack", "bench")
}


def lint_imports(root: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess[str]:
    """Import Linter on the code under ``pythonpath``, with the project's contracts."""
    return subprocess.run(  # noqa: S603 - our own interpreter and its console script
        [Path(sys.executable).parent / "lint-imports", "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_import_flows_one_way_and_no_package_has_a_cycle() -> None:
    result = lint_imports(ROOT, [ROOT / "layers" / "common", ROOT])

    assert result.returncode == 0, result.stdout[-3000:]
    assert "4 kept, 0 broken" in result.stdout


FORBIDDEN = {  # an import each contract forbids, and where it is added
    "stages": [
        ("event_router/store/connection.py", "from event_router.operate import replay"),  # the store reaching up
        ("event_router/deliver/outbox.py", "from event_router.process import intents"),  # delivery into its feeder
    ],
    "destinations": [("event_router/deliver/moodle/rules.py", "from event_router.deliver.zoho import client")],
    "product": [("event_router/settings.py", "import devstack.samples")],
    "cycles": [("bench/harness.py", "import bench.run")],  # two benchmark modules importing each other
}


@pytest.mark.parametrize(
    ("broken", "module", "added"),
    [(broken, module, added) for broken, imports in FORBIDDEN.items() for module, added in imports],
)
def test_a_forbidden_import_breaks_the_contracts(tmp_path: Path, broken: str, module: str, added: str) -> None:
    for name, source in PACKAGES.items():
        shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{added}  # the forbidden import\n")

    result = lint_imports(tmp_path, [tmp_path])

    assert result.returncode != 0
    names = {
        "stages": "no import against the direction",
        "destinations": "one destination does not reach into the other",
        "product": "the product never imports the development tools",
        "cycles": "no import cycles",
    }
    assert names[broken] in result.stdout.split("Broken contracts")[-1], result.stdout[-3000:]
