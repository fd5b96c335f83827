"""Fixtures for tests against a real Docker engine (the agent's runtime and end-to-end tests).

Loaded for the whole suite by tests/conftest.py (`pytest_plugins`), so tests/agent and tests/e2e share one
session engine. The engine itself and the test images come from `iotistic.agent.testing.dockerd` (also used by
benchmarks/agent_footprint.py).

`docker_engine` (session): a private `dockerd` in a temp folder with its own socket (`--iptables=false
--ip-forward=false`), its own bridge and its own address pool, so it neither needs nor disturbs another engine on
the machine; or, when `DOCKER_HOST` already answers, that engine (reused, never stopped). It builds the test
images with no registry: a rootfs holding busybox-static and its applet symlinks, imported with `ENV PATH=/bin`.
When `docker-registry` is installed it also runs a registry on a loopback port, so real pulls can be tested.

`engine` (per test): the session engine, plus clean-up afterwards of every object a test made: the agent's
managed containers, networks and volumes, and anything labelled `iotistic.test=1`.

Needs root, `dockerd` (Debian docker.io) and `/usr/bin/busybox` (busybox-static); without them the Docker tests
skip with the reason (or fail, where everything must run: see `unavailable`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

from iotistic.agent.testing.dockerd import (
    BUSYBOX,
    CRASH_IMAGE,
    TEST_IMAGE,
    TEST_IMAGE_2,
    DockerdUnavailable,
    PrivateDockerd,
    answers,
    build_images,
    dockerd_binary,
)

TEST_LABEL = "iotistic.test"
MANAGED_LABEL = "io.iotistic.managed=true"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unavailable(reason: str) -> NoReturn:
    """A missing prerequisite: a skip for a developer's quick run, a failure where everything must run.

    scripts/test.sh (and so CI) sets IOTISTIC_REQUIRE_ALL=1 after installing every prerequisite, so there a
    missing piece is an error, never a silently skipped test.
    """
    if os.environ.get("IOTISTIC_REQUIRE_ALL") == "1" or os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@dataclass
class DockerEngine:
    """A Docker engine for tests, with the images they use."""

    base_url: str
    api: Any  # docker.APIClient
    image: str = TEST_IMAGE
    image2: str = TEST_IMAGE_2
    crash_image: str = CRASH_IMAGE
    registry: str | None = None
    _pushed: int = field(default=0, repr=False)

    def registry_image(self) -> str:
        """A fresh reference that exists only in the test registry (not locally): pulling it really pulls."""
        if self.registry is None:
            unavailable("docker-registry is not installed: no registry to pull from")
        self._pushed += 1
        reference = f"{self.registry}/iotistic/app"
        tag = f"v{self._pushed}-{random.randrange(10**6)}"
        self.api.tag(self.image2, reference, tag)
        for event in self.api.push(reference, tag=tag, stream=True, decode=True):
            assert "error" not in event, event
        self.api.remove_image(f"{reference}:{tag}")
        return f"{reference}:{tag}"

    def clean(self) -> None:
        """Remove every container, network and volume the agent or a test made."""
        api = self.api
        for filters in ({"label": MANAGED_LABEL}, {"label": TEST_LABEL}):
            for c in api.containers(all=True, filters=filters):
                with contextlib.suppress(Exception):
                    api.remove_container(c["Id"], force=True, v=True)
            for n in api.networks(filters=filters):
                with contextlib.suppress(Exception):
                    api.remove_network(n["Id"])
            for v in api.volumes(filters=filters).get("Volumes") or []:
                with contextlib.suppress(Exception):
                    api.remove_volume(v["Name"])


class _Registry:
    """`docker-registry` (Debian's distribution 2.x) on a loopback port; Docker trusts 127.0.0.0/8 over HTTP."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.address = f"127.0.0.1:{free_port()}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str | None:
        binary = shutil.which("docker-registry")
        if binary is None:
            return None
        config = self.root / "registry.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'registry'}\n"
            f"http:\n  addr: {self.address}\n"
        )
        with open(self.root / "registry.log", "wb") as log:
            self.process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        host, port = self.address.split(":")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
                return self.address
            time.sleep(0.1)
        return None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    if importlib.util.find_spec("docker") is None:
        unavailable("the docker SDK is not installed (pip install -e '.[dev]')")
    given = os.environ.get("DOCKER_HOST")
    api = answers(given) if given else None
    private: PrivateDockerd | None = None
    if api is None:
        if os.geteuid() != 0:
            unavailable("the Docker tests start their own dockerd and need root")
        if dockerd_binary() is None:
            unavailable("dockerd is not installed (Debian package docker.io)")
        private = PrivateDockerd()
        try:
            api = private.start()
        except DockerdUnavailable as exc:
            pytest.fail(str(exc))
    if not BUSYBOX.exists():
        unavailable("/usr/bin/busybox is not installed (Debian package busybox-static)")
    registry_root = Path(tempfile.mkdtemp(prefix="iotistic-registry-"))
    registry = _Registry(registry_root)
    engine = DockerEngine(base_url=private.base_url if private is not None else str(given), api=api)
    try:
        build_images(api)
        engine.registry = registry.start()
        yield engine
    finally:
        engine.clean()
        registry.stop()
        shutil.rmtree(registry_root, ignore_errors=True)
        if private is not None:
            private.remove_all(api)
            api.close()
            private.stop()
        else:
            for image in (engine.image, engine.image2, engine.crash_image):
                with contextlib.suppress(Exception):
                    api.remove_image(image, force=True)
            api.close()


@pytest.fixture
def engine(docker_engine: DockerEngine) -> Iterator[DockerEngine]:
    docker_engine.clean()
    yield docker_engine
    docker_engine.clean()
