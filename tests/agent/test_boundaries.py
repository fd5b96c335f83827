"""The agent is installed alone (`iotistic[agent]`): it must not import the cloud, billing or ingest code.

import-linter checks this in CI too; this test keeps the rule visible and running with the agent's own suite.
"""

from __future__ import annotations

import ast
from pathlib import Path

import iotistic.agent

FORBIDDEN = ("iotistic.cloud", "iotistic.billing", "iotistic.ingest")
AGENT_DIR = Path(iotistic.agent.__file__).parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_agent_imports_nothing_of_cloud_billing_or_ingest() -> None:
    offenders = {
        f"{path.relative_to(AGENT_DIR)}: {name}"
        for path in AGENT_DIR.rglob("*.py")
        for name in _imports(path)
        if name.startswith(FORBIDDEN)
    }
    assert not offenders


def test_planner_and_state_do_no_io() -> None:
    """The planner is pure: no clocks, sockets, files, subprocesses or Docker in its imports."""
    io_modules = ("time", "socket", "os", "subprocess", "docker", "httpx", "asyncio", "sqlite3", "random", "pathlib")
    for module in ("state.py", "reconcile/planner.py"):
        imported = {name.split(".")[0] for name in _imports(AGENT_DIR / module)}
        assert not imported & set(io_modules), module
