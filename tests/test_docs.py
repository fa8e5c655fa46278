"""The README and docs/: short enough for a newcomer, links that resolve, every route, key, flag and field documented."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import riskcore
from conftest import ROOT
from riskcore import config as config_module
from riskcore.api.factory import create_app
from riskcore.data.db_setting import DATABASE_KEYS
from riskcore.ops.history import HISTORY_COLUMNS

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")
SCRIPTS = sorted(path.stem for path in ROOT.glob("*.py") if "\ndef main(" in path.read_text(encoding="utf-8"))


def doc(name: str) -> str:
    return (ROOT / "docs" / name).read_text(encoding="utf-8")


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every table row of a page (header and separator rows included)."""
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            for line in markdown.splitlines() if line.startswith("|")]


def app_routes(project: Path) -> dict[str, set[str]]:
    """Each route of the app (converters dropped: `/risk/<client_id>`) with its methods."""
    routes: dict[str, set[str]] = {}
    for rule in create_app(project).url_map.iter_rules():
        if rule.endpoint != "static" and not rule.endpoint.endswith(".static"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", rule.rule)
            routes.setdefault(path, set()).update(rule.methods - {"HEAD", "OPTIONS"})
    return routes


def api_rows() -> dict[str, tuple[set[str], str]]:
    """Each path of api.md's route tables: the methods its rows give, and their text (one row per method or not)."""
    rows: dict[str, tuple[set[str], str]] = {}
    for cells in table_rows(doc("api.md")):
        path = re.match(r"`(/[^`?\s]*)", cells[1]) if len(cells) > 2 else None
        if path and re.fullmatch(r"[A-Z, ]+", cells[0]):
            methods, text = rows.get(path.group(1), (set(), ""))
            rows[path.group(1)] = (methods | set(re.findall(r"[A-Z]+", cells[0])), text + " ".join(cells[1:]))
    return rows


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


def test_every_route_of_the_app_is_in_the_api_reference_with_its_methods(project: Path):
    documented = {path: methods for path, (methods, _) in api_rows().items()}
    routes = app_routes(project)
    assert {"/", "/history", "/prediction"} <= set(routes)  # the app's routes were read
    assert documented == routes


def test_every_config_key_is_in_the_config_reference():
    reference = doc("pipeline.md")
    sections = {"model": config_module.MODEL_DEFAULTS, "automation": config_module.AUTOMATION_DEFAULTS,
                "alerts": config_module.ALERT_DEFAULTS, "alerts.email": config_module.EMAIL_DEFAULTS,
                "reporting": config_module.REPORTING_DEFAULTS, "api": config_module.API_DEFAULTS}
    plain = {*config_module.PATH_KEYS, "input_database", "max_id_length"}
    assert set(config_module.TOP_LEVEL_KEYS) - plain <= set(sections)  # a new section needs its keys checked here
    keys = [*config_module.TOP_LEVEL_KEYS, *(f"{section}.{key}" for section, keys in sections.items() for key in keys)]
    assert [key for key in keys if f"`{key}`" not in reference and f"`{key}." not in reference] == []
    database = doc("database.md")
    assert [key for key in DATABASE_KEYS if f"`{key}`" not in database] == []


def test_every_field_of_the_run_history_is_in_the_automation_page():
    page = doc("automation.md").split("## The run history", 1)[1]
    fields = [field for cells in table_rows(page) for field in re.findall(r"`(\w+)`", cells[0])]
    assert [column for column in ("id", *HISTORY_COLUMNS) if column not in fields] == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_of_every_script_is_in_the_flags_table(script: str, capsys):
    with pytest.raises(SystemExit) as done:
        importlib.import_module(script).main(["--help"])
    assert done.value.code == 0
    options = capsys.readouterr().out.split("options:", 1)[1]
    flags = set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z-]*)", options, re.M)) - {"--help", "--config", "--verbose"}
    reference = doc("pipeline.md").split("## The scripts' flags", 1)[1].split("\n## ", 1)[0]
    rows = [" ".join(cells[1:]) for cells in table_rows(reference) if f"`{script}.py`" in cells[0]]
    assert len(rows) == 1
    assert sorted(flag for flag in flags if f"`{flag}" not in rows[0]) == []


def test_every_make_target_is_in_the_development_page():
    targets = re.findall(r"^([a-z][a-z-]*):.*## ", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M)
    table = " ".join(cells[0] for cells in table_rows(doc("development.md").split("## Make targets", 1)[1]))
    assert "run" in targets and [target for target in targets if f"`make {target}`" not in table] == []


def test_every_make_variable_is_in_the_development_page():
    variables = re.findall(r"^([A-Z_]+) \?=", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M)
    page = doc("development.md")
    assert "PORT" in variables and [name for name in variables if f"`{name}`" not in page] == []


def test_every_benchmark_and_flag_of_the_bench_runner_is_in_the_benchmarks_page():
    source = (ROOT / "bench" / "run.py").read_text(encoding="utf-8")
    names = re.search(r"^BENCHMARKS = (\([^)]*\))", source, re.M | re.S).group(1)
    flags = re.findall(r'add_argument\("(--[a-z][a-z-]*)"', source)
    page = doc("benchmarks.md")
    assert "--only" in flags and [item for item in [*flags, *ast.literal_eval(names)] if f"`{item}" not in page] == []




def test_every_query_parameter_of_the_openapi_document_is_in_its_routes_row(project: Path):
    paths = create_app(project).test_client().get("/openapi.json").get_json()["paths"]
    rows = {path: text for path, (_, text) in api_rows().items()}
    missing = [f"{path} {parameter['name']}" for path, methods in paths.items() for method in methods.values()
               for parameter in method.get("parameters", []) if parameter["in"] == "query"
               and not re.search(rf"\b{parameter['name']}\b", rows[re.sub(r"\{(\w+)\}", r"<\1>", path)])]
    assert "/risk" in rows and missing == []


def test_every_field_of_every_json_answer_is_in_its_routes_row(project: Path):
    document = create_app(project).test_client().get("/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    rows = {path: text for path, (_, text) in api_rows().items()}
    missing = []
    for path, methods in document["paths"].items():
        for operation in methods.values():
            schema = operation["responses"].get("200", {}).get("content", {}).get("application/json", {}).get("schema")
            if schema is None or path == "/openapi.json":  # the OpenAPI document's own fields are the standard's
                continue
            schema = schemas[schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema
            row = rows[re.sub(r"\{(\w+)\}", r"<\1>", path)]
            missing += [f"{path} {field}" for field in schema.get("properties", {})
                        if not re.search(rf"\b{field}\b", row)]
    assert "/scoring" in rows
    assert missing == [], missing
