"""The README and the guides in docs/ hold together: every link resolves inside the repository, and
the README stays a front door."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import pytest

from event_router.contract import DeliveryStatus, EventStatus

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(document: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    found = set()
    for line in document.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.name)
def test_every_link_resolves_inside_the_repository(document: Path) -> None:
    broken = []
    for target in LINK.findall(document.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if (
            not linked.exists()
            or not linked.is_relative_to(ROOT)
            or (anchor and linked.suffix == ".md" and anchor not in anchors(linked))
        ):
            broken.append(target)

    assert broken == []


def test_the_readme_is_a_front_door_of_at_most_12_kib() -> None:
    assert len((ROOT / "README.md").read_bytes()) <= 12 * 1024


def test_the_readme_shows_the_two_commands_and_links_every_guide() -> None:
    readme = (ROOT / "README.md").read_text()

    assert "make dev" in readme
    assert "make test" in readme
    assert [d.name for d in DOCUMENTS[1:] if f"(docs/{d.name})" not in readme] == []


def test_the_moodle_guide_lists_exactly_the_functions_and_capabilities_the_router_uses() -> None:
    """The contract suite runs a real Moodle with exactly ``FUNCTIONS`` in the service and
    ``CAPABILITIES`` in the role, so the guide must say exactly those."""
    from event_router.deliver.moodle.client import CAPABILITIES, FUNCTIONS

    guide = (ROOT / "docs" / "connect-moodle.md").read_text()
    listed_functions = re.findall(r"^   - `(\w+)`$", guide, flags=re.MULTILINE)
    listed_capabilities = re.findall(r"^   \| `([\w/:]+)` \|", guide, flags=re.MULTILINE)

    assert listed_functions == list(FUNCTIONS)
    assert sorted(listed_capabilities) == sorted(CAPABILITIES)


def test_the_zoho_guide_lists_exactly_the_scopes_the_router_needs() -> None:
    from event_router.deliver.zoho.client import SCOPES

    guide = (ROOT / "docs" / "connect-zoho.md").read_text()

    assert re.findall(r"^   - `(ZohoCRM\.[\w.]+)`$", guide, flags=re.MULTILINE) == list(SCOPES)


CODE = [
    path
    for folder in ("layers", "functions", "devstack", "bench", "scripts", "clients", "tests")
    for path in (ROOT / folder).rglob("*")
    if path.suffix in {".py", ".php", ".yaml", ".toml"}
    and "__pycache__" not in path.parts
    and path.name != "test_docs.py"
] + [ROOT / "template.yaml", ROOT / "Makefile", ROOT / "samconfig.toml", ROOT / "pyproject.toml"]
PYTHON_FILES = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if not p.parts[len(ROOT.parts)].startswith(".")}


def _headings(document: Path) -> list[str]:
    return [line.lstrip("#").strip().lower() for line in document.read_text().splitlines() if line.startswith("#")]


def _unresolved(text: str) -> list[str]:
    """The references of ``text`` to a guide, a guide's section, the README's sections or a module that
    do not resolve in the repository."""
    missing: list[str] = []
    text = re.sub(r"\s*\n\s*(#\s*)?", " ", text)  # a reference may run over a line break (and a comment's #)
    for guide, section in re.findall(r"docs/([a-z0-9-]+\.md)(?:, \"([^\"]+)\")?", text):
        document = ROOT / "docs" / guide
        if not document.exists():
            missing.append(f"docs/{guide}")
        elif section and not any(h.startswith(section.lower()) for h in _headings(document)):
            missing.append(f'docs/{guide}, "{section}"')
    for section in re.findall(r"README,? \"([^\"]+)\"", text):
        if not any(h.startswith(section.lower()) for h in _headings(ROOT / "README.md")):
            missing.append(f'README "{section}"')
    for module in re.findall(r"``([a-z_/]+\.py)``", text):
        if not any(name == module or name.endswith(f"/{module}") for name in PYTHON_FILES):
            missing.append(module)
    return missing


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_reference_in_the_code_resolves_in_the_repository(path: Path) -> None:
    assert _unresolved(path.read_text(errors="replace")) == []


def test_a_reference_that_does_not_resolve_is_found() -> None:
    text = 'see docs/nowhere.md, docs/operate.md, "No such section", README "Nothing" and ``gone.py``'

    assert _unresolved(text) == ["docs/nowhere.md", 'docs/operate.md, "No such section"', 'README "Nothing"', "gone.py"]


def test_the_readme_map_names_every_folder_and_function() -> None:
    readme = (ROOT / "README.md").read_text()
    the_map = readme.split("## Where things are", 1)[1].split("##", 1)[0]
    package = ROOT / "layers" / "common" / "event_router"
    folders = [
        f"{p.name}/"
        for p in package.rglob("*")
        if p.is_dir() and "__pycache__" not in p.parts and "migrations" not in p.parts
    ]
    functions = [f"{p.name}/" for p in (ROOT / "functions").iterdir() if p.is_dir() and p.name != "__pycache__"]
    top = [f"{p.name}/" for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")]

    assert [name for name in folders + functions + top if name not in the_map] == []


@pytest.mark.parametrize(
    ("heading", "statuses"), [("Event statuses", EventStatus), ("Delivery statuses", DeliveryStatus)]
)
def test_the_contract_lists_exactly_the_statuses_of_the_code(heading: str, statuses: type[StrEnum]) -> None:
    section = (ROOT / "docs" / "contract.md").read_text().split(heading, 1)[1].split("\n\n", 2)[1]
    listed = re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE)

    assert listed == [status.value for status in statuses]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_module_a_guide_names_exists(document: Path) -> None:
    named = re.findall(r"`([a-z_/]+\.py)", document.read_text())

    assert [m for m in named if not any(n == m or n.endswith(f"/{m}") for n in PYTHON_FILES)] == []
