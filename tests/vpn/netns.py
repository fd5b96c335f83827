"""Network namespaces, veth pairs and real OpenVPN processes for the VPN tests (reused by the agent's tests).

A `NetLab` owns everything it creates and removes it on `close()` (the `netlab` fixture calls it even when a
test fails): processes are stopped, namespaces deleted (which deletes their veth ends and tun devices), the work
directory removed. Names carry the creating process's pid, so a run that was killed leaves names that the next
`NetLab` recognises as stale (their pid is gone) and removes.

Topology: one "server" namespace holding a bridge `br0` with the underlay address 10.213.0.1/24; each other
namespace is joined to the bridge by a veth pair and gets 10.213.0.<n>/24. No namespace has a route to the
host, so traffic can only go to addresses inside namespaces the lab created.

Usage:
    lab = NetLab()
    server_ns = lab.server_namespace()
    device_ns = lab.device_namespace()            # 10.213.0.2 on the underlay
    server = lab.start_server(server_ns, pki, passphrase)
    client = lab.start_client(device_ns, ovpn_text)
    client.wait_for("Initialization Sequence Completed")
    lab.close()
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from iotistic.vpn.addressing import AddressPlan
from iotistic.vpn.pki import Pki
from iotistic.vpn.server_config import ServerOptions, render_server_config

PREFIX = "ivpn"
UNDERLAY = ipaddress.IPv4Network("10.213.0.0/24")
SERVER_UNDERLAY = UNDERLAY.network_address + 1
CONNECTED = "Initialization Sequence Completed"
# Namespace numbers are unique in the process: several labs may be alive at once.
_numbers = itertools.count()


def _run(*args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def require_tools() -> None:
    """The binaries the tunnel tests need; a missing one fails the test (scripts/test.sh installs them)."""
    missing = [tool for tool in ("ip", "openvpn", "openssl") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"missing {', '.join(missing)}: apt-get install openvpn openssl iproute2")
    if not Path("/dev/net/tun").exists():
        raise RuntimeError("/dev/net/tun does not exist: OpenVPN cannot create tun devices here")
    if os.geteuid() != 0:
        raise RuntimeError("the tunnel tests create network namespaces and must run as root")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_namespaces() -> None:
    """Namespaces left by a lab whose process is gone (e.g. a test run killed with SIGKILL)."""
    listing = _run("ip", "-j", "netns", "list", check=False).stdout.strip()
    for entry in json.loads(listing) if listing else []:
        match = re.fullmatch(rf"{PREFIX}(\d+)x\d+", entry.get("name", ""))
        if match and not _pid_alive(int(match.group(1))):
            _run("ip", "netns", "del", entry["name"], check=False)


@dataclass
class OpenVpnProcess:
    """An openvpn process in a namespace, with its log file."""

    name: str
    namespace: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern: str, timeout: float = 20, *, start: int = 0) -> str:
        """Wait until the log (from character `start`) matches `pattern`; return the matching line."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()[start:]
            match = regex.search(text)
            if match:
                line_start = text.rfind("\n", 0, match.start()) + 1
                line_end = text.find("\n", match.end())
                return text[line_start:line_end if line_end >= 0 else None]
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.process.returncode}) before {pattern!r}:\n"
                                     f"{text[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {pattern!r} within {timeout}s:\n{text[-3000:]}")
            time.sleep(0.1)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclass
class OpenVpnServer(OpenVpnProcess):
    config_path: Path = field(default=Path())
    status_path: Path = field(default=Path())
    management_socket: Path = field(default=Path())
    address: str = str(SERVER_UNDERLAY)
    port: int = 1194


@dataclass
class NetLab:
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="iotistic-vpn-lab-")))
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _server_ns: str | None = None
    _next_host: int = 2

    def __post_init__(self) -> None:
        require_tools()
        remove_stale_namespaces()
        # OpenVPN drops to nobody after start and must still reach the CRL and client-config-dir below here.
        os.chmod(self.workdir, 0o711)

    # --- namespaces -----------------------------------------------------------------------------------------------
    def _new_namespace(self) -> str:
        name = f"{PREFIX}{os.getpid()}x{next(_numbers)}"
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")
        # Explicit: isolation between devices rests on the server not forwarding tun to tun.
        _run("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_forward=0")
        return name

    def server_namespace(self) -> str:
        if self._server_ns is None:
            ns = self._new_namespace()
            _run("ip", "-n", ns, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", ns, "addr", "add", f"{SERVER_UNDERLAY}/{UNDERLAY.prefixlen}", "dev", "br0")
            _run("ip", "-n", ns, "link", "set", "br0", "up")
            self._server_ns = ns
        return self._server_ns

    def device_namespace(self) -> str:
        """A new namespace joined to the server's bridge, with the next underlay address."""
        server_ns = self.server_namespace()
        ns = self._new_namespace()
        host = self._next_host
        self._next_host += 1
        outer, inner = f"{PREFIX[:2]}{os.getpid() % 100000}h{host}", "eth0"
        # Both ends are made in the device namespace, then one moves to the server's and joins the bridge.
        _run("ip", "-n", ns, "link", "add", inner, "type", "veth", "peer", "name", outer)
        _run("ip", "-n", ns, "link", "set", outer, "netns", server_ns)
        _run("ip", "-n", server_ns, "link", "set", outer, "master", "br0")
        _run("ip", "-n", server_ns, "link", "set", outer, "up")
        _run("ip", "-n", ns, "addr", "add", f"{UNDERLAY.network_address + host}/{UNDERLAY.prefixlen}", "dev", inner)
        _run("ip", "-n", ns, "link", "set", inner, "up")
        return ns

    def addresses(self, ns: str, dev: str | None = None) -> list[str]:
        """IPv4 addresses in the namespace (of one device when given), as `addr/prefix`."""
        args = ["ip", "-j", "-n", ns, "-4", "addr", "show"] + (["dev", dev] if dev else [])
        result = _run(*args, check=False)
        if result.returncode != 0:
            return []
        return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(result.stdout or "[]")
                for a in link.get("addr_info", [])]

    def exec(self, ns: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", ns, *args, check=False, timeout=timeout)

    def _spawn(self, ns: str, args: list[str], pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(["ip", "netns", "exec", ns, *args], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=pass_fds)
        self.processes.append(process)
        return process

    # --- OpenVPN --------------------------------------------------------------------------------------------------
    def start_server(self, ns: str, pki: Pki, passphrase: str, *, port: int = 1194, status_interval: int = 1,
                     name: str = "server") -> OpenVpnServer:
        """The OpenVPN server on the server namespace's underlay address, configured by render_server_config.

        The server key's passphrase reaches OpenVPN through a pipe (`askpass /dev/fd/N`), never a file.
        """
        plan: AddressPlan = pki.plan
        config_path = self.workdir / f"{name}.conf"
        log_path = self.workdir / f"{name}.log"
        status_path = self.workdir / f"{name}-status.log"
        management_socket = self.workdir / f"{name}-mgmt.sock"
        read_fd, write_fd = os.pipe()
        try:
            options = ServerOptions(plan=plan, port=port, local=str(SERVER_UNDERLAY),
                                    askpass=Path(f"/dev/fd/{read_fd}"), status_file=status_path,
                                    status_interval=status_interval, log_file=log_path, keepalive=(2, 10),
                                    management_socket=management_socket)
            config_path.write_text(render_server_config(options, pki.paths.server_files()))
            os.write(write_fd, passphrase.encode() + b"\n")
            os.close(write_fd)
            write_fd = -1
            process = self._spawn(ns, ["openvpn", "--config", str(config_path)], pass_fds=(read_fd,))
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
        server = OpenVpnServer(name=name, namespace=ns, log_path=log_path, process=process, config_path=config_path,
                               status_path=status_path, management_socket=management_socket, port=port)
        server.wait_for(CONNECTED)
        return server

    def start_client(self, ns: str, ovpn: str | Path, *, name: str = "client") -> OpenVpnProcess:
        """An OpenVPN client in `ns` with a device's .ovpn (text or path); does not wait for the tunnel."""
        if isinstance(ovpn, str):
            path = self.workdir / f"{name}.ovpn"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(ovpn)
            ovpn = path
        log_path = self.workdir / f"{name}.log"
        process = self._spawn(ns, ["openvpn", "--config", str(ovpn), "--log", str(log_path)])
        return OpenVpnProcess(name=name, namespace=ns, log_path=log_path, process=process)

    # --- reachability ---------------------------------------------------------------------------------------------
    def listen(self, ns: str, address: str, port: int) -> subprocess.Popen[bytes]:
        """A TCP listener in `ns` that answers every connection with `ok`."""
        script = ("import socket,sys\n"
                  "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                  "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16); print('ready', flush=True)\n"
                  "while True:\n c,_=s.accept(); c.sendall(b'ok'); c.close()\n")
        process = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", script, address, str(port)],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.processes.append(process)
        assert process.stdout is not None
        if process.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"listener on {address}:{port} in {ns} did not start")
        return process

    def can_connect(self, ns: str, address: str, port: int, timeout: float = 2) -> bool:
        """Whether a TCP connection from `ns` to address:port gets the listener's `ok`."""
        script = ("import socket,sys\n"
                  "try:\n c=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))\n"
                  " sys.exit(0 if c.recv(2)==b'ok' else 1)\n"
                  "except OSError:\n sys.exit(1)\n")
        result = self.exec(ns, sys.executable, "-c", script, address, str(port), str(timeout), timeout=timeout + 10)
        return result.returncode == 0

    def reachable(self, ns: str, address: str, port: int, within: float = 10) -> bool:
        """Whether a connection succeeds within `within` seconds. A device's first packets may be dropped: the
        server installs a session's data-channel keys a moment after the device reports the tunnel up."""
        return wait_until(lambda: self.can_connect(ns, address, port, timeout=1), within, interval=0.3)

    # --- clean-up -------------------------------------------------------------------------------------------------
    def close(self) -> None:
        # SIGKILL: nothing of theirs outlives the namespaces, and a server's explicit-exit-notify would otherwise
        # hold each teardown for two seconds.
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        for ns in reversed(self.namespaces):
            _run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


def wait_until(predicate: Callable[[], object], timeout: float = 10, interval: float = 0.2) -> bool:
    """Poll `predicate()` until it is true or `timeout` passes; the final value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return bool(predicate())
        time.sleep(interval)
