"""`iotistic simulate` and `iotistic up --demo`, run for real as subprocesses against a real `iotistic up` (API and
embedded broker on SQLite), read by a service account on the broker."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from iotistic.broker.testing import MqttProbe, wait_until
from tests.simulator.conftest import READER, READER_PASSWORD
from tests.test_cli import CLI, PASSWORD, clean_env, free_port, one_error_line, run


@pytest.mark.parametrize(("args", "message"), [
    (["--devices", "0"], "--devices must be between 1 and 100,000, not 0"),
    (["--devices", "100001"], "--devices must be between 1 and 100,000"),
    (["--interval-ms", "9"], "--interval-ms must be at least 10 ms"),
    (["--duration", "0"], "--duration must be a positive number of seconds"),
    (["--broker", "http://host"], "--broker: broker URL 'http://host': scheme must be mqtt:// or mqtts://"),
    (["--api", "127.0.0.1:3002"], "--api must be an http:// or https:// URL"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, message, tmp_path):
    result = run("simulate", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in one_error_line(result)
    assert not (tmp_path / ".iotistic").exists()


def test_missing_key_and_unreachable_api_are_one_line_and_exit_1(tmp_path):
    api = f"http://127.0.0.1:{free_port()}"
    result = run("simulate", "--devices", "2", "--api", api, cwd=tmp_path)
    assert result.returncode == 1
    assert "no provisioning key given (give --provisioning-key or set IOTISTIC_PROVISIONING_KEY)" in \
        one_error_line(result)
    result = run("simulate", "--devices", "2", "--api", api, cwd=tmp_path,
                 env=clean_env(IOTISTIC_PROVISIONING_KEY="pk_x"))
    assert result.returncode == 1
    assert f"cannot reach the cloud API at {api}" in one_error_line(result)


class Up:
    """`iotistic up` in a folder of its own, with its embedded broker; an owner exists."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.cwd = cwd
        self.base = f"http://127.0.0.1:{free_port()}"
        self.mqtt_port = free_port()
        self.args = ["up", "--port", self.base.rsplit(":", 1)[1], "--mqtt-port", str(self.mqtt_port), *args]
        self.proc: subprocess.Popen[str] | None = None
        self.token = ""

    def start(self) -> Up:
        self.log = open(self.cwd / "up.log", "a")  # closed in stop()
        self.proc = subprocess.Popen([*CLI, *self.args], cwd=self.cwd, env=clean_env(), stdout=subprocess.PIPE,
                                     stderr=self.log, text=True)
        assert wait_until(self._healthy, within=60, interval=0.2), (self.cwd / "up.log").read_text()
        self.token = httpx.post(f"{self.base}/api/v1/auth/login", json={"email": "o@example.com",
                                                                         "password": PASSWORD}).json()["access_token"]
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, (self.cwd / "up.log").read_text()
        try:
            return httpx.get(f"{self.base}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> str:
        assert self.proc is not None
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=30)
        self.log.close()
        return out

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        r = httpx.request(method, f"{self.base}{path}", headers={"Authorization": f"Bearer {self.token}"},
                          timeout=10, **kwargs)
        assert r.status_code == expect, r.text
        return r.json()

    def reader(self) -> MqttProbe:
        """The reader service account (made on first use), subscribed to every device's topics on the broker."""
        if not any(a["username"] == READER for a in self.call("GET", "/api/v1/mqtt/accounts")["items"]):
            self.call("POST", "/api/v1/mqtt/accounts", 201, json={
                "username": READER, "kind": "service", "password": READER_PASSWORD,
                "rules": [{"topic": "iot/device/+/#", "access": "read"}]})
        probe = MqttProbe(self.mqtt_port, READER, READER_PASSWORD).start()
        assert wait_until(lambda: probe.connack is not None, within=10) and probe.accepted, probe.connack
        mid = probe.subscribe("iot/device/+/sensor/#")
        assert wait_until(lambda: mid in probe.subacks, within=10)
        return probe

    def simulator_devices(self) -> list[dict[str, Any]]:
        return [d for d in self.call("GET", "/api/v1/devices", params={"limit": 100})["items"]
                if d["deviceType"] == "bme688-simulator"]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    assert run("db", "upgrade", cwd=tmp_path).returncode == 0
    assert run("admin", "create", "--email", "o@example.com", "--password", PASSWORD, cwd=tmp_path).returncode == 0
    return tmp_path


def senders(probe: MqttProbe) -> set[str]:
    return {topic.split("/")[2] for topic, _ in probe.received()}


def test_simulate_registers_publishes_and_reuses_its_devices(workdir: Path):
    up = Up(workdir).start()
    try:
        key = up.call("POST", "/api/v1/provisioning-keys", 201, json={})["key"]
        reader = up.reader()
        state = workdir / "sim.json"
        args = ["simulate", "--devices", "3", "--interval-ms", "200", "--duration", "2", "--api", up.base,
                "--state-file", str(state)]
        first = run(*args, cwd=workdir, env=clean_env(IOTISTIC_PROVISIONING_KEY=key))
        assert first.returncode == 0, first.stderr
        assert "3 simulated device(s) ready" in first.stdout
        assert "] 3/3 connected" in first.stdout  # the periodic status line
        assert "stopped: 0/3 connected" in first.stdout and ", 0 error(s)" in first.stdout
        published = int(first.stdout.split("stopped: 0/3 connected, ")[1].split(" published")[0])
        assert published >= 3 * 4 * 5
        assert f"{published} published, {published} acked" in first.stdout
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
        uuids = {d["uuid"] for d in json.loads(state.read_text())["devices"]}
        assert wait_until(lambda: senders(reader) == uuids, within=10)
        assert wait_until(lambda: len(reader.received()) >= published, within=10)

        again = run(*args[:-4], "--duration", "1", "--api", up.base, "--state-file", str(state), cwd=workdir)
        assert again.returncode == 0, again.stderr  # no key needed: the devices are reused
        assert {d["uuid"] for d in up.simulator_devices()} == uuids
        reader.stop()
    finally:
        up.stop()


def test_up_demo_runs_simulated_devices_registered_through_the_api(workdir: Path):
    up = Up(workdir, "--demo").start()
    try:
        assert wait_until(lambda: len(up.simulator_devices()) == 3, within=30)
        devices = up.simulator_devices()
        assert {d["status"] for d in devices} == {"active"}
        [key] = up.call("GET", "/api/v1/provisioning-keys")  # made at start through the service layer
        assert key["devicesRegistered"] == 3 and key["maxDevices"] == 3 and "demo" in key["description"]
        reader = up.reader()
        assert wait_until(lambda: senders(reader) == {d["uuid"] for d in devices}, within=20)
        reader.stop()
    finally:
        out = up.stop()
    assert "Demo:      3 simulated BME688 device(s) publishing every 5 s" in out

    up = Up(workdir, "--demo").start()  # a restart reuses the same devices and makes no new key
    try:
        reader = up.reader()
        assert wait_until(lambda: senders(reader) == {d["uuid"] for d in devices}, within=20)
        assert [d["uuid"] for d in up.simulator_devices()] == [d["uuid"] for d in devices]
        assert len(up.call("GET", "/api/v1/provisioning-keys")) == 1
        reader.stop()
    finally:
        up.stop()

