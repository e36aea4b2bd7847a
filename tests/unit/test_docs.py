"""The README and the guides in docs/ hold together: every link resolves inside the repository, and
the README stays a front door."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
    from event_router.deliver.moodle import CAPABILITIES, FUNCTIONS

    guide = (ROOT / "docs" / "connect-moodle.md").read_text()
    listed_functions = re.findall(r"^   - `(\w+)`$", guide, flags=re.MULTILINE)
    listed_capabilities = re.findall(r"^   \| `([\w/:]+)` \|", guide, flags=re.MULTILINE)

    assert listed_functions == list(FUNCTIONS)
    assert sorted(listed_capabilities) == sorted(CAPABILITIES)


def test_the_zoho_guide_lists_exactly_the_scopes_the_router_needs() -> None:
    from event_router.deliver.zoho import SCOPES

    guide = (ROOT / "docs" / "connect-zoho.md").read_text()

    assert re.findall(r"^   - `(ZohoCRM\.[\w.]+)`$", guide, flags=re.MULTILINE) == list(SCOPES)
