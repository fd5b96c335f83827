"""A private Docker engine and registry-free test images, for the agent's tests and benchmarks.

`PrivateDockerd` runs a `dockerd` of its own in a temp folder: its own socket (`--iptables=false
--ip-forward=false`), its own bridge and its own address pool, so it neither needs nor disturbs another engine on
the machine. `build_images` makes the images the tests use with no registry: a rootfs holding busybox-static and
its applet symlinks, imported with `ENV PATH=/bin`.

Needs root, `dockerd` (Debian docker.io), `ip` (iproute2) and `/usr/bin/busybox` (busybox-static):
`missing_prerequisite()` names the first one missing. Used by tests/agent/conftest.py and
benchmarks/agent_footprint.py; nothing in the agent itself imports it.
"""

# Fixed argument lists of system tools (ip, umount, dockerd), for a test engine only:
# ruff: noqa: S603, S607

from __future__ import annotations

import io
import os
import random
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

BUSYBOX = Path("/usr/bin/busybox")
APPLETS = ("sh", "sleep", "httpd", "echo", "cat", "nc", "touch", "ls", "rm", "test", "[", "true", "false", "date")
#: The images `build_images` makes: (repository, tag, extra files, Dockerfile-style changes).
TEST_IMAGE = "local/iotistic-test:1"
TEST_IMAGE_2 = "local/iotistic-test:2"
CRASH_IMAGE = "local/iotistic-crash:1"


class DockerdUnavailable(Exception):
    """The private engine could not be started; the message says why (with the end of its log)."""


def dockerd_binary() -> str | None:
    found = shutil.which("dockerd")
    if found:
        return found
    return "/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None


def missing_prerequisite() -> str | None:
    """Why a private engine cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "a private dockerd needs root"
    if dockerd_binary() is None:
        return "dockerd is not installed (Debian package docker.io)"
    if shutil.which("ip") is None:
        return "ip is not installed (Debian package iproute2)"
    if not BUSYBOX.exists():
        return "/usr/bin/busybox is not installed (Debian package busybox-static)"
    return None


def answers(base_url: str) -> Any | None:
    """A `docker.APIClient` for the engine at `base_url` if it answers a ping, else None."""
    import docker

    try:
        api = docker.APIClient(base_url=base_url, version="auto", timeout=10)
        api.ping()
        return api
    except Exception:
        return None


def _rootfs(extra: dict[str, bytes]) -> bytes:
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


def build_images(api: Any) -> None:
    """`TEST_IMAGE`, `TEST_IMAGE_2` (both `sleep 100000`, differing in /etc/version) and `CRASH_IMAGE` (prints
    to stderr and exits 3), from busybox-static alone: `docker import` of a tiny rootfs."""
    images = [
        (TEST_IMAGE, {"etc/version": b"1\n"}, ["ENV PATH=/bin", 'CMD ["sleep", "100000"]']),
        (TEST_IMAGE_2, {"etc/version": b"2\n"}, ["ENV PATH=/bin", 'CMD ["sleep", "100000"]']),
        (CRASH_IMAGE, {}, ["ENV PATH=/bin", 'CMD ["sh", "-c", "echo boom >&2; exit 3"]']),
    ]
    for reference, extra, changes in images:
        repository, tag = reference.rsplit(":", 1)
        api.import_image_from_data(_rootfs(extra), repository=repository, tag=tag, changes=changes)


class PrivateDockerd:
    """A dockerd of our own: temp folder, socket, bridge and address pool; `stop()` removes all of it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="iotistic-dockerd-"))
        self.base_url = f"unix://{self.root}/docker.sock"
        self.bridge = f"itb{random.randrange(16**6):06x}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Any:
        """Start it and return a `docker.APIClient`; raises `DockerdUnavailable`."""
        binary = dockerd_binary()
        if binary is None:
            raise DockerdUnavailable("dockerd is not installed (Debian package docker.io)")
        try:
            subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True, capture_output=True)
            # 10.99.x.1/24 for the default bridge, 10.100-249.0.0/16 for user networks: clear of the 172.x ranges
            # another engine on the machine uses by default.
            address = f"10.99.{random.randrange(256)}.1/24"
            subprocess.run(["ip", "addr", "add", address, "dev", self.bridge], check=True, capture_output=True)
            subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            self.stop()
            raise DockerdUnavailable(f"cannot make the bridge {self.bridge}: {exc}") from exc
        pool = f"base=10.{random.randrange(100, 250)}.0.0/16,size=24"
        with open(self.root / "dockerd.log", "wb") as log:
            self.process = subprocess.Popen(
                [binary, "--iptables=false", "--ip-forward=false", "-H", self.base_url,
                 "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                 "--pidfile", str(self.root / "dockerd.pid"), "--bridge", self.bridge,
                 "--default-address-pool", pool],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            api = answers(self.base_url)
            if api is not None:
                return api
            if self.process.poll() is not None:
                break
            time.sleep(0.3)
        log_tail = (self.root / "dockerd.log").read_text(errors="replace")[-3000:]
        self.stop()
        raise DockerdUnavailable(f"dockerd did not start:\n{log_tail}")

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

    def remove_all(self, api: Any) -> None:
        """Every container and unused network of this engine (before `stop`)."""
        for c in api.containers(all=True):
            try:
                api.remove_container(c["Id"], force=True, v=True)
            except Exception:  # noqa: S112 - best effort: the engine is about to go
                continue
        try:
            api.prune_networks()
        except Exception:  # noqa: S110
            pass
