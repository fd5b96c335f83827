"""Keeps one `openvpn` client running while VPN_ENABLED is on.

The loop: take the configuration (VPN_CONFIG_PATH; missing, ask the cloud through the fetcher the agent installs
once provisioned), check and adapt it (`config.prepare`), write the result with a management socket into a
private runtime folder, start `openvpn`, follow its state through the management interface and its log through
its output, and when it ends ask the state machine (`state.VpnTracker`) whether and when to start it again.

`openvpn` runs with `--remap-usr1 SIGTERM`: a drop (ping timeout, server restart, TLS failure) ends the process
instead of an internal restart, so reconnection, its backoff and its counting are all here. The client is
started in its own session and stopped by signalling that group, so a command prefix (VPN_COMMAND_PREFIX, e.g.
`ip netns exec NAME` or `nsenter --net=...`, which exec openvpn in place) changes nothing in how it is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import shutil
import signal
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from iotistic.agent.settings import AgentSettings
from iotistic.agent.sync.backoff import backoff_delay
from iotistic.agent.sync.http import CloudError, CloudUnavailable
from iotistic.agent.vpn import management
from iotistic.agent.vpn.config import VpnConfigError, prepare, remotes
from iotistic.agent.vpn.files import read_config, save_config, write_private
from iotistic.agent.vpn.state import OpenVpnState, VpnTracker, error_in_log

log = logging.getLogger(__name__)

#: How long a stopped client gets to close its tunnel (and tell the server) before it is killed.
STOP_SECONDS = 5.0
#: Without a configuration and nobody to ask for one, look for a file placed by hand this often.
CONFIG_POLL_SECONDS = 10.0
#: If the management interface closes while the process lives on, it is given this long to exit by itself.
MANAGEMENT_GRACE_SECONDS = 3.0

Fetcher = Callable[[], Awaitable[str]]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class VpnSupervisor:
    def __init__(self, settings: AgentSettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()
        self.tracker = VpnTracker(enabled=settings.vpn_enabled, auto_reconnect=settings.vpn_auto_reconnect,
                                  backoff_base=settings.vpn_backoff_base, backoff_max=settings.vpn_backoff_max,
                                  rng=self._rng)
        self._wake = asyncio.Event()  # something to look at again: a fetcher, a new configuration
        self._reload = asyncio.Event()  # a new configuration: restart a running client, start a stopped one
        self._fetcher: Fetcher | None = None
        self._fetch_failures = 0
        self.output: deque[str] = deque(maxlen=100)  # the client's last log lines (no secrets at --verb 3)

    # --- what the agent calls -------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        snapshot = self.tracker.snapshot()
        snapshot["configPath"] = str(self.settings.vpn_config_file) if self.settings.vpn_enabled else None
        return snapshot

    def set_fetcher(self, fetcher: Fetcher | None) -> None:
        """How to ask the cloud for a configuration when there is none (installed once provisioned)."""
        self._fetcher = fetcher
        self._fetch_failures = 0
        self._wake.set()

    def config_changed(self) -> None:
        """A new configuration was stored: a running client is restarted with it, a stopped one started."""
        self.tracker.config_replaced()
        self._reload.set()
        self._wake.set()

    # --- the loop -------------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        if not self.settings.vpn_enabled:
            return
        runtime = Path(tempfile.mkdtemp(prefix="iotistic-vpn-"))  # mode 0700: only we reach the socket
        try:
            while not stop.is_set():
                self._wake.clear()
                self._reload.clear()
                text, retry_in = await self._config_text()
                if text is None:
                    await self._pause(stop, retry_in, self._wake)
                    continue
                try:
                    prepared = prepare(text, server_host=self.settings.vpn_server_host,
                                       server_port=self.settings.vpn_server_port)
                except VpnConfigError as exc:
                    log.error("VPN configuration %s refused: %s", self.settings.vpn_config_file, exc)
                    self.tracker.no_config(f"configuration refused: {exc}", _now())
                    await self._pause(stop, CONFIG_POLL_SECONDS, self._wake)
                    continue
                delay = await self._run_client(prepared, runtime, stop)
                if stop.is_set():
                    break
                if delay is None:
                    log.warning("VPN client down; VPN_AUTO_RECONNECT is off: it stays down until the agent restarts "
                                "or a new configuration arrives")
                # Only a new configuration cuts a backoff short: the client may just have been refused.
                await self._pause(stop, delay, self._reload)
        finally:
            self.tracker.stopping(_now())
            shutil.rmtree(runtime, ignore_errors=True)

    @staticmethod
    async def _pause(stop: asyncio.Event, seconds: float | None, wake: asyncio.Event) -> None:
        """Sleep until `seconds` passed (None: no limit), `stop` or `wake` is set."""
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def _config_text(self) -> tuple[str | None, float]:
        """The stored configuration; else one from the cloud (stored first); else None and when to look again."""
        path = self.settings.vpn_config_file
        try:
            text = await asyncio.to_thread(read_config, path)
        except OSError as exc:
            self.tracker.no_config(f"cannot read {path}: {exc.strerror or exc}", _now())
            return None, CONFIG_POLL_SECONDS
        if text is not None:
            return text, 0.0
        if self._fetcher is None:
            self.tracker.no_config(f"no VPN configuration at {path} yet (it comes with registration, or put an "
                                   ".ovpn file there)", _now())
            return None, CONFIG_POLL_SECONDS
        try:
            text = await self._fetcher()
            await asyncio.to_thread(save_config, path, text)
        except Exception as exc:
            if not isinstance(exc, CloudError | VpnConfigError | OSError):
                log.exception("asking the cloud for the VPN configuration failed")
            self._fetch_failures += 1
            slow = not isinstance(exc, CloudUnavailable | OSError)
            retry_in = self.settings.vpn_backoff_max if slow else backoff_delay(
                self._fetch_failures, self.settings.vpn_backoff_base, self.settings.vpn_backoff_max, self._rng)
            self.tracker.no_config(f"waiting for the VPN configuration from the cloud: {exc}", _now())
            log.warning("VPN configuration not available yet (%s); asking again in %.1f s", exc, retry_in)
            return None, retry_in
        self._fetch_failures = 0
        log.info("VPN configuration from the cloud stored in %s", path)
        return text, 0.0

    # --- one client run -------------------------------------------------------------------------------------------
    def command(self, config: Path, socket_path: Path) -> list[str]:
        return [
            *self.settings.vpn_argv_prefix, self.settings.vpn_openvpn_binary,
            "--config", str(config),
            "--management", str(socket_path), "unix", "--management-hold",
            "--remap-usr1", "SIGTERM",  # every drop ends the process: reconnection is the supervisor's
            "--script-security", "1",  # built-in commands only, whatever the configuration says
            "--verb", "3", "--suppress-timestamps",
        ]

    async def _run_client(self, prepared: str, runtime: Path, stop: asyncio.Event) -> float | None:
        """Run the client until it ends (or `stop`, or a new configuration); the delay before the next start."""
        config, socket_path = runtime / "client.ovpn", runtime / "management.sock"
        await asyncio.to_thread(write_private, config, prepared)
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        found = remotes(prepared)
        server = str(found[0]) if found else None
        argv = self.command(config, socket_path)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True,
                cwd=self.settings.vpn_config_file.parent)
        except OSError as exc:
            self.tracker.started(None, server)
            log.error("cannot start the VPN client %s: %s", argv[0], exc.strerror or exc)
            return self.tracker.start_failed(f"cannot start {argv[0]}: {exc.strerror or exc}", _now())
        self.tracker.started(process.pid, server)
        log.info("VPN client started (pid %s) towards %s", process.pid, server)
        output = asyncio.create_task(self._read_output(process))
        follower = asyncio.create_task(self._follow(process, str(socket_path)))
        ended = asyncio.ensure_future(process.wait())
        interrupt = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._reload.wait())]
        try:
            await asyncio.wait([ended, follower, *interrupt], return_when=asyncio.FIRST_COMPLETED)
            if follower.done() and not ended.done():
                # The management link is gone (or never came): without it there is no state to go by.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(ended), MANAGEMENT_GRACE_SECONDS)
            if not ended.done():
                await _terminate(process)
            code = await ended
        finally:
            if process.returncode is None:  # cancelled: the client must not outlive its supervisor
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
            for task in interrupt:
                task.cancel()
            follower.cancel()
            await asyncio.gather(*interrupt, follower, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(output, 2.0)
        replaced = self._reload.is_set() and not stop.is_set()
        delay = self.tracker.exited(code, _now(), stopping=stop.is_set() or replaced)
        log.info("VPN client ended (code %s)%s", code, "" if delay is None else f"; starting again in {delay:.1f} s")
        return 0.0 if replaced else delay

    async def _follow(self, process: asyncio.subprocess.Process, socket_path: str) -> None:
        try:
            reader, writer = await management.connect(socket_path, lambda: process.returncode is None)
        except OSError as exc:
            if process.returncode is None:
                self.tracker.error(f"management interface not reachable: {exc}", _now())
            return
        await management.follow(reader, writer, self._on_event)

    def _on_event(self, event: management.Event) -> None:
        now = _now()
        if isinstance(event, OpenVpnState):
            was_connected = self.tracker.connected
            self.tracker.openvpn_state(event, now)
            if self.tracker.connected and not was_connected:
                log.info("VPN connected: tunnel address %s, server %s", self.tracker.tunnel_address,
                         self.tracker.server)
            elif was_connected and not self.tracker.connected:
                log.warning("VPN connection lost (%s)", event.reason or event.name)
        elif isinstance(event, management.ByteCount):
            self.tracker.byte_count(event.bytes_in, event.bytes_out)
        else:
            self.tracker.error(f"openvpn: {event.message}", now)

    async def _read_output(self, process: asyncio.subprocess.Process) -> None:
        stream = process.stdout
        if stream is None:
            return
        while raw := await stream.readline():
            line = raw.decode(errors="replace").rstrip()
            self.output.append(line)
            problem = error_in_log(line)
            if problem is not None:
                self.tracker.error(problem, _now())
                log.warning("openvpn: %s", problem)
            else:
                log.debug("openvpn: %s", line)


async def _terminate(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the client's process group (it closes the tunnel and tells the server), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, STOP_SECONDS)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), wait)
            return
