"""`iotistic twin import` and `iotistic twin show`, run as the installed command on a real SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import clean_env, one_error_line, run
from tests.twin.ifc_files import changed_campus, write_campus


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = clean_env(IOTISTIC_DATA_DIR=str(tmp_path / "data"))
    result = run("db", "upgrade", env=environment)
    assert result.returncode == 0, result.stderr
    return environment


def test_import_prints_the_report_and_show_draws_the_tree(env: dict[str, str], tmp_path: Path) -> None:
    campus = write_campus(tmp_path / "campus.ifc", "IFC2X3")
    result = run("twin", "import", str(campus), env=env)
    assert result.returncode == 0, result.stderr
    assert "campus.ifc (IFC2X3)" in result.stdout
    rows = {line.split()[1]: line.split()[3:11:2] for line in result.stdout.splitlines()
            if line.startswith("│") and line.split()[1] in ("Site", "Space", "Element")}
    # in file, created, updated, deleted
    assert rows == {"Site": ["2", "2", "0", "0"], "Space": ["5", "5", "0", "0"], "Element": ["5", "5", "0", "0"]}
    assert "edges: 22 in file, 22 created, 0 deleted" in result.stdout
    assert "1 warning(s):" in result.stdout and "LOOSE" in result.stdout

    again = run("twin", "import", str(campus), env=env)
    assert again.returncode == 0 and "edges: 22 in file, 0 created, 0 deleted" in again.stdout

    changed = run("twin", "import", str(changed_campus(campus, tmp_path / "v2.ifc")), "--source", "campus.ifc",
                  env=env)
    assert changed.returncode == 0, changed.stderr
    space_row = next(line for line in changed.stdout.splitlines() if line.startswith("│ Space"))
    assert space_row.split()[3:11:2] == ["4", "0", "1", "1"]  # 4 in file, A1-02 renamed, B1-01 gone

    tree = run("twin", "show", env=env)
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    assert lines[0].startswith("Project Campus")
    assert any("Site North" in line for line in lines) and any("Site South" in line for line in lines)
    assert any("Space A1-02 Lab" in line for line in lines)
    assert not any("B1-01" in line for line in lines)
    t101 = next(i for i, line in enumerate(lines) if "Element T-101" in line)
    assert "Space A1-01" in lines[t101 - 1]  # the sensor hangs under its space

    sub = run("twin", "show", "A1-01", env=env)
    assert sub.returncode == 0, sub.stderr
    assert sub.stdout.splitlines()[0].startswith("Space A1-01")
    assert "Element T-101" in sub.stdout and "Building" not in sub.stdout


def test_show_names_a_missing_node_and_an_empty_graph(env: dict[str, str]) -> None:
    empty = run("twin", "show", env=env)
    assert empty.returncode == 0 and "the graph is empty" in empty.stdout
    result = run("twin", "show", "Atlantis", env=env)
    assert result.returncode == 1
    assert "no node with the id, GlobalId or name 'Atlantis'" in one_error_line(result)


def test_a_bad_file_exits_1_with_one_line_and_changes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    campus = write_campus(tmp_path / "campus.ifc")
    assert run("twin", "import", str(campus), env=env).returncode == 0
    before = run("twin", "show", env=env).stdout

    not_ifc = tmp_path / "notes.ifc"
    not_ifc.write_text("this is not a building\n")
    truncated = tmp_path / "truncated.ifc"
    truncated.write_bytes(campus.read_bytes()[:2000])
    other_schema = tmp_path / "other.ifc"
    other_schema.write_bytes(campus.read_bytes().replace(b"FILE_SCHEMA(('IFC4'))", b"FILE_SCHEMA(('IFC4X1'))"))
    for path, message in ((not_ifc, "not an IFC file"), (truncated, "truncated or corrupt"),
                          (other_schema, "unsupported IFC schema"), (tmp_path / "missing.ifc", "no such file")):
        result = run("twin", "import", str(path), "--source", "campus.ifc", env=env)
        assert result.returncode == 1, result.stdout
        assert message in one_error_line(result)
        assert result.stdout == ""
    assert run("twin", "show", env=env).stdout == before
