"""MUTATION.md, the mutation-testing record: it names its command, keeps the bar for every
module, explains every survivor, lists every mutated module, and is not older than the code."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib

import pytest

from tests.paths import ROOT

RECORD = ROOT / "MUTATION.md"
ROW = re.compile(r"^\| (exporter/\S+\.py) \| (\w+) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+) % \| "
                 r"[^|]* \|$", re.MULTILINE)


def mutated() -> list[str]:
    """The modules ``[tool.mutmut] only_mutate`` names."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    return list(config["only_mutate"])


def rows() -> dict[str, tuple[str, int, int, float]]:
    """module -> (commit, mutants, killed, score) as MUTATION.md records them."""
    return {m: (commit, int(n), int(k), float(score))
            for m, commit, n, k, _, score in ROW.findall(RECORD.read_text())}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_record_names_its_command_date_and_machine() -> None:
    text = RECORD.read_text()
    assert "- command: `./scripts/mutation`" in text
    assert re.search(r"^- date: \d{4}-\d{2}-\d{2}$", text, re.MULTILINE)
    assert re.search(r"^- machine: \d+ cores", text, re.MULTILINE)
    assert os.access(ROOT / "scripts" / "mutation", os.X_OK)
    assert "./scripts/mutation" in (ROOT / "README.md").read_text()


def survivors() -> dict[str, list[str]]:
    """module -> the reasons its survivors are given in MUTATION.md."""
    found: dict[str, list[str]] = {}
    section: list[str] | None = None
    for line in RECORD.read_text().splitlines():
        if line.startswith("### "):
            section = found.setdefault(line[4:].strip(), [])
        elif section is not None and line.startswith("| `"):
            section.append(line.rsplit(" | ", 1)[1].removesuffix(" |"))
    return found


def test_every_module_measured_scores_90_percent_and_every_survivor_has_a_reason() -> None:
    """Below 90 % only where every survivor is shown equivalent or unreachable: no gap left."""
    measured = rows()
    assert measured, "MUTATION.md holds no module rows"
    reasons = survivors()
    low = {m: score for m, (_, _, _, score) in measured.items() if score < 90.0
           and any(why.startswith("gap") for why in reasons.get(m, []))}
    assert low == {}, f"below 90 % with gaps left: {low}"
    for module, (_, mutants, killed, _) in measured.items():
        assert len(reasons.get(module, [])) == mutants - killed, module
    for module, (_, mutants, killed, score) in measured.items():
        # A module with nothing to mutate (only Protocols, say) scores 100 %, as scripts/mutation
        # writes it.
        assert (round(100 * killed / mutants, 1) if mutants else 100.0) == score, module
    text = RECORD.read_text()
    total = re.search(r"^\| \*\*all\*\* \| \| (\d+) \| (\d+) \| \d+ \| \*\*([\d.]+) %\*\* \| \|$",
                      text, re.MULTILINE)
    assert total is not None
    assert int(total.group(1)) == sum(n for _, n, _, _ in measured.values())
    assert "NO REASON RECORDED" not in text


def test_every_mutated_module_is_listed_and_no_other() -> None:
    text = RECORD.read_text()
    listed = set(rows())
    unmeasured = re.search(r"^Not measured yet: (.*)\.$", text, re.MULTILINE)
    waiting = set(unmeasured.group(1).split(", ")) if unmeasured else set()
    assert listed | waiting == set(mutated())
    assert not listed & waiting


@pytest.mark.e2e  # runs git
def test_no_module_changed_after_the_commit_it_was_measured_at() -> None:
    """Stale rows, and how stale: ``./scripts/mutation --changed`` measures exactly these."""
    measured = rows()
    stale = {}
    for module in mutated():
        commit = measured.get(module, ("not measured",))[0]
        if commit in ("not measured", "unknown"):
            stale[module] = commit
            continue
        try:
            git("cat-file", "-e", f"{commit}^{{commit}}")
        except subprocess.CalledProcessError:
            stale[module] = f"commit {commit} is not in this clone's history"
            continue
        # Its text, not the commits since: merging a branch that was measured elsewhere
        # touches the module's history without changing the module.
        changed = git("diff", "--stat", commit, "HEAD", "--", module)
        if changed:
            stale[module] = f"changed since {commit}: {changed.splitlines()[-1].strip()}"
    assert stale == {}, f"{len(stale)} modules to measure again: {stale}"


#: Modules without logic of their own, left out of [tool.mutmut] only_mutate (pyproject.toml
#: says why); every package's __init__.py (re-exports) is left out too.
NOT_MUTATED = {"exporter/__main__.py", "exporter/simulator/__main__.py",
               "exporter/core/failures.py", "exporter/accounting/snapshot.py",
               "exporter/demo.py", "exporter/simulator/build.py"}


def test_every_module_with_logic_is_mutated() -> None:
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "exporter").rglob("*.py")
               if p.name != "__init__.py"}
    assert modules - NOT_MUTATED == set(mutated()), (
        "add new modules to [tool.mutmut] only_mutate (or to NOT_MUTATED, saying why in "
        "pyproject.toml)")


def test_every_test_file_the_mutation_list_names_is_one_file_under_tests() -> None:
    names = {name for line in (ROOT / "scripts" / "mutation-tests.txt").read_text().splitlines()
             if line and not line.startswith("#") for name in line.partition("\t")[2].split()}
    found = {name: len(list((ROOT / "tests").rglob(name))) for name in names}
    assert {name: n for name, n in found.items() if n != 1} == {}
