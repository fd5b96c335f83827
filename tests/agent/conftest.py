"""Fixtures for the agent's tests against a real Docker engine.

`docker_engine` (session): a private `dockerd` in a temp folder with its own socket (`--iptables=false
--ip-forward=false`), its own bridge and its own address pool, so it neither needs nor disturbs another engine on
the machine; or, when `DOCKER_HOST` already answers, that engine (reused, never stopped). It builds the test
images with no registry: a rootfs holding busybox-static and its applet symlinks, imported with `ENV PATH=/bin`.
When `docker-registry` is installed it also runs a registry on a loopback port, so real pulls can be tested.

`engine` (per test): the session engine, plus clean-up afterwards of every object a test made: the agent's
managed containers, networks and volumes, and anything labelled `iotistic.test=1`.

Needs root, `dockerd` (Debian docker.io) and `/usr/bin/busybox` (busybox-static); without them the Docker tests
skip with the reason.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import random
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

BUSYBOX = Path("/usr/bin/busybox")
APPLETS = ("sh", "sleep", "httpd", "echo", "cat", "nc", "touch", "ls", "rm", "test", "[", "true", "false", "date")
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
    image: str = "local/iotistic-test:1"
    image2: str = "local/iotistic-test:2"
    crash_image: str = "local/iotistic-crash:1"
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


def _answers(base_url: str) -> Any | None:
    import docker

    try:
        api = docker.APIClient(base_url=base_url, version="auto", timeout=10)
        api.ping()
        return api
    except Exception:
        return None


def _build_images(api: Any) -> None:
    """Images from busybox-static alone: `docker import` of a tiny rootfs (no registry, no base image)."""

    def rootfs(extra: dict[str, bytes]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for folder in ("bin", "tmp", "etc", "data"):
                info = tarfile.TarInfo(folder)
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
                tar.addfile(info)
            tar.add(str(BUSYBOX), arcname="bin/busybox")
            for applet in APPLETS:
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
            for name, content in extra.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        return buffer.getvalue()

    images = [
        ("local/iotistic-test", "1", {"etc/version": b"1\n"}, ["ENV PATH=/bin", 'CMD ["sleep", "100000"]']),
        ("local/iotistic-test", "2", {"etc/version": b"2\n"}, ["ENV PATH=/bin", 'CMD ["sleep", "100000"]']),
        ("local/iotistic-crash", "1", {}, ["ENV PATH=/bin", 'CMD ["sh", "-c", "echo boom >&2; exit 3"]']),
    ]
    for repository, tag, extra, changes in images:
        api.import_image_from_data(rootfs(extra), repository=repository, tag=tag, changes=changes)


class _PrivateDockerd:
    """A dockerd of our own: temp folder, socket, bridge and address pool; stopped and cleaned at the end."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="iotistic-dockerd-"))
        self.base_url = f"unix://{self.root}/docker.sock"
        suffix = f"{random.randrange(16**6):06x}"
        self.bridge = f"itb{suffix}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Any:
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True)
        # 10.99.x.1/24 for the default bridge, 10.100-249.0.0/16 for user networks: clear of the 172.x ranges
        # another engine on the machine uses by default.
        address = f"10.99.{random.randrange(256)}.1/24"
        subprocess.run(["ip", "addr", "add", address, "dev", self.bridge], check=True)
        subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True)
        pool = f"base=10.{random.randrange(100, 250)}.0.0/16,size=24"
        with open(self.root / "dockerd.log", "wb") as log:
            self.process = subprocess.Popen(
                [
                    shutil.which("dockerd") or "/usr/sbin/dockerd",
                    "--iptables=false",
                    "--ip-forward=false",
                    "-H",
                    self.base_url,
                    "--data-root",
                    str(self.root / "data"),
                    "--exec-root",
                    str(self.root / "exec"),
                    "--pidfile",
                    str(self.root / "dockerd.pid"),
                    "--bridge",
                    self.bridge,
                    "--default-address-pool",
                    pool,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            api = _answers(self.base_url)
            if api is not None:
                return api
            if self.process.poll() is not None:
                break
            time.sleep(0.3)
        log_tail = (self.root / "dockerd.log").read_text(errors="replace")[-3000:]
        self.stop()
        pytest.fail(f"dockerd did not start:\n{log_tail}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        netns = self.root / "exec" / "netns" / "default"
        if netns.exists():
            subprocess.run(["umount", str(netns)], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


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
    api = _answers(given) if given else None
    private: _PrivateDockerd | None = None
    if api is None:
        if os.geteuid() != 0:
            unavailable("the Docker tests start their own dockerd and need root")
        if shutil.which("dockerd") is None and not Path("/usr/sbin/dockerd").exists():
            unavailable("dockerd is not installed (Debian package docker.io)")
        private = _PrivateDockerd()
        api = private.start()
    if not BUSYBOX.exists():
        unavailable("/usr/bin/busybox is not installed (Debian package busybox-static)")
    registry_root = Path(tempfile.mkdtemp(prefix="iotistic-registry-"))
    registry = _Registry(registry_root)
    engine = DockerEngine(base_url=private.base_url if private is not None else str(given), api=api)
    try:
        _build_images(api)
        engine.registry = registry.start()
        yield engine
    finally:
        engine.clean()
        registry.stop()
        shutil.rmtree(registry_root, ignore_errors=True)
        if private is not None:
            for c in api.containers(all=True):
                with contextlib.suppress(Exception):
                    api.remove_container(c["Id"], force=True, v=True)
            with contextlib.suppress(Exception):
                api.prune_networks()
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
