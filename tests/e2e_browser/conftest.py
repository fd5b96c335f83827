"""The whole product in a real browser: `iotistic up --demo` (SQLite in a temp dir, the embedded MQTT broker, ingest
in the API, three simulated BME688 devices, the built dashboard at /) on free loopback ports, a real agent
(`iotistic agent`) running its services on a private Docker engine, and Debian's Chromium driven by Playwright.

Every page a test opens is watched: any console error or uncaught page error fails the test. Screenshots go to
artifacts/screenshots/ (laptop 1366x768, tablet 768x1024); the platform's and the agent's logs to
artifacts/e2e_browser/.

Needs the dashboard built (`npm run build` in dashboard/; scripts/test.sh does it first), /usr/bin/chromium
(Debian package chromium) and what tests/docker_engine.py needs for the agent.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD, LicenseKeys
from tests.docker_engine import DockerEngine, free_port, unavailable

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dashboard" / "dist"
ARTIFACTS = ROOT / "artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
LOGS = ARTIFACTS / "e2e_browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LAPTOP = {"width": 1366, "height": 768}
TABLET = {"width": 768, "height": 1024}
OWNER_EMAIL = "owner@example.com"
OWNER_PASSWORD = PASSWORD
DEMO_DEVICES = 3
AGENT_NAME = "e2e-agent"
FLEET = "lab"

_SCRIPT = Path(sys.executable).parent / "iotistic"
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "iotistic.cli"]
# The platform's own configuration is set explicitly below; nothing leaks in from the caller's environment.
_CONFIG_VARS = ("DATABASE_URL", "DB_", "JWT_SECRET", "LICENSE_PUBLIC_KEY", "IOTISTIC_", "LOG_LEVEL", "METRICS_TOKEN",
                "PUBLIC_URL", "MQTT_", "REDIS_URL", "INGEST_", "DASHBOARD_DIR", "VPN_", "CLOUD_API_ENDPOINT",
                "PROVISIONING_KEY", "AGENT_", "DEVICE_")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CONFIG_VARS)}
    env.update(extra)
    return env


def wait_until(check: Callable[[], Any], what: str, seconds: float = 60.0, every: float = 0.25) -> Any:
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            last = check()
            if last:
                return last
        time.sleep(every)
    pytest.fail(f"timed out after {seconds:g} s waiting for {what} (last: {last!r})")


class Process:
    """A child process whose output is collected (line by line, in a thread, so its pipe never fills) into a
    log file and a list the test can search."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.lines: list[str] = []
        self._log = open(LOGS / f"{name}.log", "w")  # closed in stop()
        self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._log.write(line)
            self._log.flush()

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            self._reader.join(5)
            pytest.fail(f"{self.name} exited with {self.proc.returncode}: {''.join(self.lines[-30:])}")

    def find(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        self.check_running()
        for line in list(self.lines):
            found = pattern.search(line)
            if found:
                return found
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._reader.join(10)
        self._log.close()


@dataclass
class Platform:
    url: str
    mqtt_port: int
    process: Process
    setup_token: str

    def api(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture(scope="session")
def dashboard_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the build: a rebuild during the run (vite empties dist/ first) must not pull pages away."""
    if not (DIST / "index.html").is_file():
        unavailable(f"the dashboard is not built ({DIST}/index.html missing): run `npm ci && npm run build` in "
                    "dashboard/ (scripts/test.sh does)")
    return Path(shutil.copytree(DIST, tmp_path_factory.mktemp("dashboard") / "dist"))


@pytest.fixture(scope="session")
def platform(dashboard_build: Path, license_keys: LicenseKeys, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Platform]:
    """`iotistic up --demo` as an operator starts it, on a fresh data dir: it prints the one-time setup link."""
    home = tmp_path_factory.mktemp("platform")
    port, mqtt_port = free_port(), free_port()
    env = clean_env(
        IOTISTIC_DATA_DIR=str(home / "data"), DASHBOARD_DIR=str(dashboard_build),
        # Enterprise: the digital twin is a licensed feature, and four devices are over the free mode's three.
        LICENSE_PUBLIC_KEY=license_keys.public_pem, IOTISTIC_LICENSE_KEY=license_keys.token("enterprise", 30),
        # Logins at Argon2id's smallest cost: the tests log in often on a shared, loaded machine.
        ARGON2_TIME_COST="1", ARGON2_MEMORY_KIB="64", ARGON2_PARALLELISM="1", LOG_LEVEL="WARNING",
    )
    process = Process("platform", [*CLI, "up", "--host", "127.0.0.1", "--port", str(port), "--mqtt-port",
                                   str(mqtt_port), "--demo", "--demo-devices", str(DEMO_DEVICES)], env, home)
    try:
        link = wait_until(lambda: process.find(re.compile(r"/setup#token=(st_[A-Za-z0-9_-]+)")), "the setup link")
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, "the API", 60)
        wait_until(lambda: process.find(re.compile(r"Demo: .* publishing")), "the demo devices", 90)
        yield Platform(url=url, mqtt_port=mqtt_port, process=process, setup_token=link.group(1))
    finally:
        process.stop()


def login_tokens(platform: Platform) -> dict[str, str]:
    with platform.api() as client:
        r = client.post("/api/v1/auth/login", json={"email": OWNER_EMAIL, "password": OWNER_PASSWORD})
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture(scope="session")
def owner(platform: Platform) -> str:
    """An access token of the owner. The first test creates the owner through the setup link in the browser;
    when it did not run (a single test picked with -k), the same link is used over the API."""
    with platform.api() as client:
        if client.get("/api/v1/setup").json()["needed"]:
            r = client.post("/api/v1/setup", json={"token": platform.setup_token, "email": OWNER_EMAIL,
                                                   "password": OWNER_PASSWORD})
            assert r.status_code == 201, r.text
    return login_tokens(platform)["access_token"]


@pytest.fixture
def api(platform: Platform, owner: str) -> Iterator[httpx.Client]:
    with platform.api(login_tokens(platform)["access_token"]) as client:
        yield client


@dataclass
class AgentDevice:
    uuid: str
    name: str
    engine: DockerEngine
    process: Process

    def containers(self) -> dict[str, str]:
        """service name -> Docker status of the containers the agent manages."""
        found = {}
        for c in self.engine.api.containers(all=True, filters={"label": "io.iotistic.managed=true"}):
            found[c["Labels"].get("io.iotistic.service-name", "?")] = c["State"]
        return found


@pytest.fixture(scope="session")
def agent(platform: Platform, owner: str, docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[AgentDevice]:
    """A real agent (`iotistic agent`) in fleet "lab", provisioned through the API, running its services on the
    private Docker engine; its state reports reach the cloud over HTTP."""
    home = tmp_path_factory.mktemp("agent")
    with platform.api(owner) as client:
        fleet = client.post("/api/v1/fleets", json={"name": FLEET})
        assert fleet.status_code == 201, fleet.text
        key = client.post("/api/v1/provisioning-keys", json={"fleet": FLEET, "maxDevices": 1,
                                                              "description": "browser tests: the agent"})
        assert key.status_code == 201, key.text
    docker_engine.clean()
    env = clean_env(
        CLOUD_API_ENDPOINT=platform.url, PROVISIONING_KEY=key.json()["key"], AGENT_DATA_DIR=str(home / "data"),
        DEVICE_NAME=AGENT_NAME, DEVICE_TYPE="raspberrypi4", DOCKER_HOST=docker_engine.base_url,
        DEVICE_API_PORT=str(free_port()), POLL_INTERVAL_SECONDS="1", POLL_JITTER="0.1",
        REPORT_THROTTLE_SECONDS="0", METRICS_INTERVAL_SECONDS="5", LOG_BATCH_SECONDS="1",
        # Reports go over HTTP; the MQTT side of the platform is exercised by the demo devices.
        MQTT_ENABLED="false", LOG_LEVEL="WARNING",
    )
    process = Process("agent", [*CLI, "agent"], env, home)
    try:
        def registered() -> str | None:
            process.check_running()
            with platform.api(owner) as client:
                items = client.get("/api/v1/devices", params={"text": AGENT_NAME}).json()["items"]
            return next((d["uuid"] for d in items if d["name"] == AGENT_NAME), None)

        uuid = wait_until(registered, "the agent to register", 60)
        yield AgentDevice(uuid=uuid, name=AGENT_NAME, engine=docker_engine, process=process)
    finally:
        process.stop()
        docker_engine.clean()


# --- the browser -----------------------------------------------------------------------------------------------

# Module-scoped, not session: Playwright's sync API keeps an event loop running in the main thread while it is open,
# and every asyncio test after it would then fail ("Runner.run() cannot be called from a running event loop").
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is missing (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Watched:
    """Console errors and uncaught exceptions of one test's pages. `allow` takes patterns of errors a test
    provokes on purpose (a wrong password's 401, say)."""

    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@pytest.fixture
def watched() -> Watched:
    return Watched()


@pytest.fixture
def new_page(browser: Any, platform: Platform, watched: Watched) -> Iterator[Callable[..., Any]]:
    """Opens pages in fresh browser contexts (laptop size unless told), every one watched for errors."""
    contexts: list[Any] = []

    def open_page(viewport: dict[str, int] = LAPTOP) -> Any:
        context = browser.new_context(base_url=platform.url, viewport=viewport)
        context.set_default_timeout(20_000)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda msg: watched.errors.append(f"console.{msg.type}: {msg.text} ({msg.location})")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: watched.errors.append(f"page error: {exc}"))
        return page

    yield open_page
    for context in contexts:
        context.close()
    unexpected = watched.unexpected()
    assert not unexpected, "errors in the browser:\n" + "\n".join(unexpected)


@pytest.fixture
def page(new_page: Callable[..., Any]) -> Any:
    return new_page()


def screenshot(page: Any, name: str) -> Path:
    """Saves the whole page as artifacts/screenshots/<name>-<laptop|tablet>.png."""
    size = "tablet" if page.viewport_size["width"] < 1000 else "laptop"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}-{size}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, email: str = OWNER_EMAIL, password: str = OWNER_PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label(re.compile(r"^Password")).fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/devices$"))


@pytest.fixture(scope="session", autouse=True)
def _fresh_screenshots() -> None:
    """Screenshots of this run only."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
