"""The README and docs/: short enough for a newcomer, links that resolve, every route documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import riskcore
from conftest import ROOT
from riskcore.api.factory import create_app

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes of a page's headings."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.*)$", markdown, re.M)}


def test_the_readme_is_under_12000_characters():
    assert len(README.read_text(encoding="utf-8")) < 12_000


def test_the_package_map_names_every_module_under_its_folder():
    lines = riskcore.__doc__.split("The map", 1)[1].split("Each module's docstring", 1)[0]
    mapped, folder = {}, "root"
    for line in lines.splitlines():
        head = re.match(r"^  (\w+)/", line)
        folder = head.group(1) if head else folder if line.startswith("            ") else "root"
        mapped.setdefault(folder, set()).update(re.findall(r"\b[a-z][a-z_]*\b", line))
    package = ROOT / "riskcore"
    missing = [str(module.relative_to(package)) for module in sorted(package.rglob("*.py"))
               if module.stem != "__init__" and module.stem not in mapped.get(
                   module.parent.name if module.parent != package else "root", set())]
    assert missing == []


def test_the_readme_says_how_to_open_the_page_and_shows_it():
    text = README.read_text(encoding="utf-8")
    assert "make serve" in text and "http://127.0.0.1:8000/" in text
    assert "](docs/page.png)" in text and (ROOT / "docs" / "page.png").stat().st_size > 10_000


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda page: page.name)
def test_every_local_link_and_anchor_resolves(page: Path):
    broken = []
    for link in LINK.findall(page.read_text(encoding="utf-8")):
        if link.startswith(("http://", "https://")):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path) if path else page
        if not target.exists() or (anchor and anchor not in anchors(target.read_text(encoding="utf-8"))):
            broken.append(link)
    assert broken == []


def test_every_route_of_the_app_is_in_the_api_reference(project: Path):
    reference = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    routes = {re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", rule.rule) for rule in create_app(project).url_map.iter_rules()
              if rule.endpoint != "static" and not rule.endpoint.endswith(".static")}
    assert {"/", "/history", "/prediction"} <= routes  # the app's routes were read
    documented = set(re.findall(r"`(/[^`?\s]*)[`?\s]", reference))
    assert sorted(routes - documented) == []
