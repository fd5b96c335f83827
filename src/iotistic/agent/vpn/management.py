"""OpenVPN's management interface, on a unix socket only the agent can open (its folder is mode 0700).

The client is started with `--management-hold`: it waits until the agent has subscribed to state changes
(`state on all`, which also replays the states so far) and byte counts, then is released (`hold release`).
So no state change is missed, however slowly the agent connects. `parse_line` is pure; `follow` does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from iotistic.agent.vpn.state import OpenVpnState

#: How often OpenVPN reports the tunnel's byte counts (seconds).
BYTECOUNT_INTERVAL = 5
COMMANDS = f"state on all\nbytecount {BYTECOUNT_INTERVAL}\nhold release\n".encode()


@dataclass(frozen=True)
class ByteCount:
    bytes_in: int
    bytes_out: int


@dataclass(frozen=True)
class Fatal:
    message: str


Event = OpenVpnState | ByteCount | Fatal


def parse_line(line: str) -> Event | None:
    """One line from the interface: a state (live `>STATE:` or replayed by `state all`), a byte count, a fatal
    error; None for anything else (command replies, `>INFO:`, `>HOLD:`, log lines)."""
    line = line.rstrip("\r\n")
    if line.startswith(">STATE:"):
        return _state(line.removeprefix(">STATE:"))
    if line.startswith(">BYTECOUNT:"):
        parts = line.removeprefix(">BYTECOUNT:").split(",")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            return ByteCount(int(parts[0]), int(parts[1]))
        return None
    if line.startswith(">FATAL:"):
        return Fatal(line.removeprefix(">FATAL:").strip())
    head = line.split(",", 2)
    if len(head) >= 2 and head[0].isdigit() and head[1].isupper():  # a replayed state: "<time>,<STATE>,..."
        return _state(line)
    return None


def _state(text: str) -> OpenVpnState | None:
    # <time>,<state>,<reason>,<local ip>,<remote ip>,<remote port>,<local addr>,<local port>[,<local ipv6>]
    parts = text.split(",")
    if len(parts) < 2 or not parts[1]:
        return None
    parts += [""] * (6 - len(parts))
    return OpenVpnState(name=parts[1], reason=parts[2], local_ip=parts[3], remote=parts[4], port=parts[5])


#: OpenVPN makes its socket within milliseconds of starting; this bounds a wait for one that never comes.
CONNECT_SECONDS = 15.0


async def connect(path: str, alive: Callable[[], bool]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the socket once OpenVPN has made it (it may take a moment after the process started)."""
    deadline = time.monotonic() + CONNECT_SECONDS
    while True:
        try:
            return await asyncio.open_unix_connection(path)
        except (FileNotFoundError, ConnectionRefusedError):
            if not alive() or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def follow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, on_event: Callable[[Event], None]
                 ) -> None:
    """Subscribe, release the hold, then hand every event to `on_event` until OpenVPN closes the socket."""
    try:
        writer.write(COMMANDS)
        await writer.drain()
        while line := await reader.readline():
            event = parse_line(line.decode(errors="replace"))
            if event is not None:
                on_event(event)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await writer.wait_closed()
