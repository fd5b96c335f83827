"""A private Mosquitto running the project's configuration, and a paho client to probe it (tests, benchmarks).

`PrivateMosquitto` renders deploy/mosquitto/mosquitto.conf with only the values of `listener`, `password_file`,
`acl_file`, `persistence_location` and `pid_file` replaced (its own loopback port and temporary folder), so what
is tested is the shipped configuration. Started as root, Mosquitto drops to user `mosquitto`: the folder is
group-readable by `mosquitto`, and the persistence and pid folders are owned by it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from iotistic.broker.sync import BrokerTarget

OVERRIDABLE = ("listener", "password_file", "acl_file", "persistence_location", "pid_file")


def project_config() -> Path:
    """deploy/mosquitto/mosquitto.conf of this source checkout."""
    path = Path(__file__).resolve().parents[3] / "deploy" / "mosquitto" / "mosquitto.conf"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the Mosquitto config ships with the source tree")
    return path


def render_config(text: str, overrides: Mapping[str, str]) -> str:
    """`text` with the value of each directive in `overrides` replaced; each must appear exactly once."""
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise ValueError(f"only {', '.join(OVERRIDABLE)} may be overridden, not {', '.join(sorted(unknown))}")
    seen: Counter[str] = Counter()
    lines = []
    for line in text.splitlines(keepends=True):
        words = line.split(maxsplit=1)
        if words and words[0] in overrides:
            seen[words[0]] += 1
            line = f"{words[0]} {overrides[words[0]]}\n"
        lines.append(line)
    wrong = [key for key in overrides if seen[key] != 1]
    if wrong:
        raise ValueError(f"the config must set each of {', '.join(wrong)} exactly once")
    return "".join(lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if found is None:
        raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
    return found


class PrivateMosquitto:
    """A Mosquitto of our own: own port, own folder; removed by `close()` (or the `with` block)."""

    def __init__(self, config: Path | None = None, *, port: int | None = None) -> None:
        self.config_source = config or project_config()
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="iotistic-mosquitto-"))
        self.process: subprocess.Popen[bytes] | None = None
        as_root = os.geteuid() == 0
        broker_user = pwd.getpwnam("mosquitto") if as_root else None
        etc, data, run = self.dir / "etc", self.dir / "data", self.dir / "run"
        for folder in (etc, data, run):
            folder.mkdir()
        if broker_user is not None:
            # The broker (user mosquitto) must reach its folders and read the config again on SIGHUP.
            for folder in (self.dir, etc):
                os.chown(folder, 0, broker_user.pw_gid)
                folder.chmod(0o750)
            for folder in (data, run):
                os.chown(folder, broker_user.pw_uid, broker_user.pw_gid)
        self.target = BrokerTarget(password_file=etc / "passwd", acl_file=etc / "acl", pid_file=run / "mosquitto.pid",
                                   group="mosquitto" if broker_user is not None else None)
        self.config_file = self.dir / "mosquitto.conf"
        self.log_file = self.dir / "mosquitto.log"
        self.config_file.write_text(render_config(self.config_source.read_text(), {
            "listener": f"{self.port} 127.0.0.1",
            "password_file": str(self.target.password_file),
            "acl_file": str(self.target.acl_file),
            "persistence_location": f"{data}/",
            "pid_file": str(self.target.pid_file),
        }))
        self.config_file.chmod(0o644)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = 10.0) -> PrivateMosquitto:
        """Start the broker (password_file and acl_file must exist) and wait until it accepts connections."""
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen([mosquitto_binary(), "-c", str(self.config_file)],  # noqa: S603
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: {self.log_tail()}")
            assert self.target.pid_file is not None
            if self.target.pid_file.exists():
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"mosquitto did not start within {timeout} s: {self.log_tail()}")

    def reload(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> PrivateMosquitto:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class MqttProbe:
    """A paho-mqtt client that records what happens to it, for tests to wait on.

    paho's network thread fills the records; `until` polls them, so tests in an event loop use
    `await until(lambda: ...)` and the loop (e.g. a running broker sync) keeps running meanwhile.
    """

    def __init__(self, port: int, username: str | None, password: str | None, *, v5: bool = False,
                 client_id: str | None = None, clean: bool = True) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.v5 = v5
        self.port = port
        protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{uuid.uuid4().hex[:12]}",
                                  protocol=protocol, clean_session=None if v5 else clean)
        if username is not None:
            self.client.username_pw_set(username, password)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.connack: Any = None  # paho ReasonCode of the first CONNACK
        self.disconnects: list[Any] = []
        self.messages: list[tuple[str, bytes]] = []
        self.subacks: dict[int, list[Any]] = {}
        self.pubacks: dict[int, Any] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish

    # paho callbacks (its network thread)
    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        with self._lock:
            if self.connack is None:
                self.connack = reason

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        with self._lock:
            self.disconnects.append(reason)

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload))

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[Any], _props: Any) -> None:
        with self._lock:
            self.subacks[mid] = list(reasons)

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _props: Any) -> None:
        with self._lock:
            self.pubacks[mid] = reason

    # actions
    def start(self) -> MqttProbe:
        """Connect and run the network loop in a thread. No automatic reconnect: a refused or kicked probe stays
        disconnected (a test that wants to come back makes a new probe)."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self._thread = threading.Thread(target=self._loop, name=f"mqtt-probe-{self.port}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        import paho.mqtt.client as mqtt

        while not self._stopping.is_set():
            if self.client.loop(timeout=0.02) != mqtt.MQTT_ERR_SUCCESS:
                return  # refused, kicked or closed

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(Exception):
            if self.client.is_connected():
                self.client.disconnect()
        if self._thread is not None:
            self._thread.join(5)

    def subscribe(self, topic: str, qos: int = 1) -> int:
        _rc, mid = self.client.subscribe(topic, qos)
        return int(mid or 0)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        return int(self.client.publish(topic, payload, qos=qos).mid)

    # state
    @property
    def connected(self) -> bool:
        return bool(self.client.is_connected())

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def received(self, topic: str | None = None) -> list[tuple[str, bytes]]:
        with self._lock:
            return [m for m in self.messages if topic is None or m[0] == topic]


async def until(predicate: Callable[[], object], within: float = 5.0, interval: float = 0.005) -> bool:
    """Wait (without blocking the event loop) until `predicate()` is true; False after `within` seconds."""
    import asyncio

    deadline = time.monotonic() + within
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)


def wait_until(predicate: Callable[[], object], within: float = 5.0, interval: float = 0.005) -> bool:
    """Blocking `until`, for code without an event loop."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True
