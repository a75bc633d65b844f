"""The layout is the architecture: every package says what it owns and what it must never import,
every package sits in a layer of the import contracts, and docs/architecture.md names them all."""

from __future__ import annotations

import ast
import re
import tomllib

import pytest

from tests.paths import ROOT

EXPORTER = ROOT / "exporter"
PACKAGES = sorted(p.parent.name for p in EXPORTER.glob("*/__init__.py"))
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()


def contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return found


def test_the_packages_are_the_concerns() -> None:
    assert PACKAGES == ["accounting", "api", "config", "core", "cost", "metrics", "polling",
                        "simulator", "web"]


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_says_what_it_owns_and_what_it_must_never_import(package: str) -> None:
    doc = ast.get_docstring(ast.parse((EXPORTER / package / "__init__.py").read_text()))
    assert doc, f"exporter/{package}/__init__.py has no docstring"
    assert len(doc.splitlines()) <= 5, "a short statement, not an essay"
    assert re.search(r"never|nothing|leaf", doc), "it must say what it must never import"


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "simulator"])
def test_each_package_has_its_layer(package: str) -> None:
    layers = next(c for c in contracts() if c["type"] == "layers")["layers"]
    assert isinstance(layers, list)
    names = {name.strip() for layer in layers for name in re.split(r"[|:]", layer)}
    assert package in names


def test_the_simulator_may_import_nothing_else_of_the_exporter() -> None:
    rule = next(c for c in contracts() if c.get("source_modules") == ["exporter.simulator"])
    forbidden = rule["forbidden_modules"]
    assert isinstance(forbidden, list)
    modules = {f"exporter.{p}" for p in PACKAGES if p != "simulator"}
    modules |= {f"exporter.{m.stem}" for m in EXPORTER.glob("*.py")
                if m.stem not in ("__init__", "__main__")}
    assert set(forbidden) == modules


def test_the_architecture_doc_names_every_package_and_module() -> None:
    for package in PACKAGES:
        assert f"  {package}/" in ARCHITECTURE, f"{package}/ missing from the tree"
    tables = ARCHITECTURE.split("## Modules", 1)[1].split("\n## ", 1)[0]
    for module in EXPORTER.glob("[!_]*/[!_]*.py"):
        if module.parent.name != "simulator":
            assert f"`{module.name}`" in tables.split(f"**{module.parent.name}/**", 1)[1], module
    for module in EXPORTER.glob("[!_]*.py"):
        assert f"`{module.name}`" in tables, module


def test_the_architecture_doc_names_the_cycle_stages_in_order() -> None:
    """docs/architecture.md's cycle is the supervisor's stages, in the order they run."""
    from exporter.polling.supervisor import STAGES
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = re.findall(r"^\d+\. \*\*(\w+)\*\*", text, re.M)
    assert named == [stage for stage in STAGES if stage != "loop"]


def test_every_path_the_architecture_doc_names_exists() -> None:
    """A module or file named in docs/architecture.md is one that exists (no drift after a
    move)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [path for path in re.findall(r"`((?:[a-z_]+/)+[a-z_]+\.(?:py|md|yml|yaml|toml))`",
                                           text)
               if not any((base / path).exists() for base in (ROOT, ROOT / "exporter"))]
    assert missing == []


def test_the_service_stays_the_wiring() -> None:
    """#31: the loop, the reload swap and the wiring fit in one screenful each; a concept that
    grows here belongs to the package that owns it (docs/architecture.md)."""
    source = (EXPORTER / "service.py").read_text()
    assert len(source.splitlines()) < 250
    long = {node.name: node.end_lineno - node.lineno + 1
            for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)
            and node.end_lineno is not None and node.end_lineno - node.lineno >= 40}
    assert not long, f"methods over 40 lines: {long}"
