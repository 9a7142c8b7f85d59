"""``--format sarif``: valid SARIF 2.1.0 with what GitHub code scanning needs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bnlint.cli import main
from bnlint.rules import ALL_RULES, INPUT_CODES
from tests.conftest import BAD_MODEL

# The official schema, kept beside the repository (CI always has it).
SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sarif-schema-2.1.0.json"
NOTEBOOK = Path(__file__).parent / "data" / "notebooks" / "train.ipynb"


@pytest.fixture
def sarif(project: Path) -> dict[str, Any]:
    """The SARIF log of a project with a bad file in a folder with a space,
    a notebook and a file that does not parse."""
    folder = project / "my models"
    folder.mkdir()
    (project / "model.py").rename(folder / "model.py")
    shutil.copy(NOTEBOOK, project / "train.ipynb")
    (project / "broken.py").write_text("import torch\ndef f(:\n")
    result = CliRunner().invoke(main, ["--format", "sarif", "."], catch_exceptions=False)
    assert result.exit_code == 1
    return json.loads(result.output)


def results_by_uri(log: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for result in log["runs"][0]["results"]:
        uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        found.setdefault(uri, []).append(result)
    return found


def test_output_validates_against_the_official_schema(sarif: dict[str, Any]) -> None:
    if not SCHEMA.is_file():
        pytest.skip(f"the SARIF 2.1.0 schema is not at {SCHEMA}")
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft4Validator(
        schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(sarif)]
    assert errors == []
    assert len(sarif["runs"][0]["results"]) == 5  # the validation saw every kind of result


def test_fields_github_code_scanning_requires(sarif: dict[str, Any]) -> None:
    assert sarif["version"] == "2.1.0" and sarif["$schema"].startswith("https://")
    (run,) = sarif["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "bnlint" and driver["version"]
    rules = driver["rules"]
    ids = [rule["id"] for rule in rules]
    assert ids == [rule.code for rule in ALL_RULES] + list(INPUT_CODES)
    for rule in rules:
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
        assert rule["help"]["text"] and rule["helpUri"].endswith(f"/{rule['id']}.html")
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in {"error", "warning"} and result["message"]["text"]
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        uri = physical["artifactLocation"]["uri"]
        assert uri and "://" not in uri and "\\" not in uri and not uri.startswith(("/", "./"))
        assert physical["region"]["startLine"] >= 1


def test_regions_uris_and_documentation(sarif: dict[str, Any]) -> None:
    found = results_by_uri(sarif)
    assert sorted(found) == ["broken.py", "my%20models/model.py", "train.ipynb"]
    dropout, missing_call = found["my%20models/model.py"]
    assert (dropout["ruleId"], missing_call["ruleId"]) == ("BNL201", "BNL004")
    region = dropout["locations"][0]["physicalLocation"]["region"]
    assert region == {"startLine": 8, "startColumn": 16, "endLine": 8, "endColumn": 33}
    (syntax,) = found["broken.py"]
    assert syntax["ruleId"] == "BNL901" and "syntax error" in syntax["message"]["text"]
    rule = sarif["runs"][0]["tool"]["driver"]["rules"][dropout["ruleIndex"]]
    assert rule["name"] == "functional-dropout-always-on"
    assert rule["fullDescription"]["text"].startswith("Finds ")
    assert "## Why is this bad?" in rule["help"]["markdown"]


def test_fixes_are_replacements_that_fix_the_file(sarif: dict[str, Any]) -> None:
    lines = BAD_MODEL.splitlines(keepends=True)
    replacements = [
        replacement
        for result in results_by_uri(sarif)["my%20models/model.py"]
        for fix in result["fixes"]
        for change in fix["artifactChanges"]
        for replacement in change["replacements"]
    ]

    def offset(line: int, column: int) -> int:
        return sum(len(text) for text in lines[: line - 1]) + column - 1

    text = BAD_MODEL
    for replacement in sorted(
        replacements,
        key=lambda r: offset(r["deletedRegion"]["startLine"], r["deletedRegion"]["startColumn"]),
        reverse=True,
    ):
        region = replacement["deletedRegion"]
        start = offset(region["startLine"], region["startColumn"])
        end = offset(region["endLine"], region["endColumn"])
        text = text[:start] + replacement["insertedContent"]["text"] + text[end:]
    expected = BAD_MODEL.replace("F.dropout(x, 0.1)", "F.dropout(x, 0.1, training=self.training)")
    assert text == expected.replace("model.eval\n", "model.eval()\n")


def test_notebook_results_point_into_the_file(sarif: dict[str, Any], project: Path) -> None:
    dropout, missing_call = results_by_uri(sarif)["train.ipynb"]
    assert dropout["message"]["text"].startswith("cell 3:7:24: `F.dropout`")
    assert missing_call["message"]["text"].startswith("cell 5:4:1: `model.eval`")
    line = dropout["locations"][0]["physicalLocation"]["region"]["startLine"]
    assert "F.dropout(x, 0.2)" in (project / "train.ipynb").read_text().splitlines()[line - 1]
    assert "fixes" not in dropout  # cell coordinates are not positions in the file
