"""The systemd units under deploy/systemd: systemd accepts them and every command they run exists."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = sorted((Path(__file__).resolve().parents[1] / "deploy" / "systemd").glob("*.service"))
INSTALLED = "/opt/iotistic/venv/bin/iotistic"


def _commands(unit: Path) -> list[list[str]]:
    found = []
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key in ("ExecStart", "ExecStartPre"):
            found.append(shlex.split(value))
    return found


def test_there_are_units() -> None:
    assert {u.name for u in UNITS} >= {"iotistic-agent.service", "iotistic-broker-sync.service",
                                        "iotistic-ingest@.service"}


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_systemd_accepts_the_unit(unit: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is part of Debian's systemd package"
    iotistic = Path(sys.executable).with_name("iotistic")
    text = unit.read_text().replace(INSTALLED, str(iotistic))
    copy = tmp_path / (unit.name.replace("@.", "@test.") if "@." in unit.name else unit.name)
    copy.write_text(text)
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    # Other units it names (docker.service, mosquitto.service) need not exist on this machine.
    problems = [line for line in done.stderr.splitlines()
                if line.strip() and "not found" not in line and "Failed to put bus name" not in line]
    assert problems == [], done.stderr


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_every_command_is_one_the_cli_has(unit: Path) -> None:
    commands = _commands(unit)
    assert commands
    for command in commands:
        assert command[0] == INSTALLED
        args = [a for a in command[1:] if not a.startswith("--")]
        done = subprocess.run([sys.executable, "-m", "iotistic.cli", *args, "--help"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
